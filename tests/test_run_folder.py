"""A run folder: one run at a time, one config, a new folder on request."""

import os
import subprocess
import sys
import textwrap

import pytest

from asc_keras.config import config_from_dict, load_config, save_config
from asc_keras.recipe import run_training
from asc_keras.run_folder import RunFolderError, RunLock, check_config, new_run_folder


def test_a_locked_folder_refuses_a_second_lock_until_released(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(
            RunFolderError, match=rf"'{tmp_path}/run' is in use .*pid {os.getpid()}"
        ):
            RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run"):  # released on exit
        pass


HOLDER = textwrap.dedent(
    """
    import sys, time
    from asc_keras.run_folder import RunLock
    RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(600)
    """
)


def test_the_lock_of_a_killed_process_is_free_again(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=f"pid {holder.pid} on "):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    assert f"pid {holder.pid}" in (tmp_path / ".lock").read_text()  # left behind, stale
    with RunLock(tmp_path):
        assert f"pid {os.getpid()}" in (tmp_path / ".lock").read_text()


CHILD = textwrap.dedent(
    """
    import sys
    from asc_keras.run_folder import RunLock
    with RunLock(sys.argv[1]):  # inherited: no error although the parent holds it
        print("child holds", flush=True)
        sys.stdin.readline()
    """
)


def test_a_child_shares_its_parents_lock_and_keeps_it_after_the_parent_lets_go(tmp_path):
    lock = RunLock(tmp_path).acquire()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        env={**os.environ, **lock.env},
        pass_fds=lock.pass_fds,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "child holds"
        lock.release()
        with pytest.raises(RunFolderError, match="in use"):  # the child still holds it
            RunLock(tmp_path).acquire()
    finally:
        child.communicate("\n")
    assert child.returncode == 0
    RunLock(tmp_path).acquire().release()


def test_a_run_folder_refuses_another_config_and_changes_nothing(tmp_path, synthetic_root):
    started = config_from_dict(
        {"data": {"root": str(synthetic_root)}, "model": {"variant": "sm1"}}, "sm1.yaml"
    )
    run = tmp_path / "run"
    run.mkdir()
    save_config(started, run / "config.yaml")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    other = config_from_dict(
        {
            "data": {"root": str(synthetic_root)},
            "model": {"variant": "sm2"},
            "training": {"epochs": 3},
        },
        "sm2.yaml",
    )
    with pytest.raises(RunFolderError) as error:
        run_training(other, run, verbose=0)
    message = str(error.value)
    assert "model.variant: 'sm1' in the folder, 'sm2' now" in message
    assert "training.epochs: 250 in the folder, 3 now" in message
    assert "--new-run" in message
    after = {p.name: p.read_bytes() for p in run.iterdir()}
    assert after == before
    assert load_config(run / "config.yaml").model.variant == "sm1"
    assert check_config(started, run / "config.yaml")  # the same config continues


def test_new_run_folder_takes_the_next_free_name(tmp_path):
    assert new_run_folder(tmp_path / "sm2") == tmp_path / "sm2"  # missing: taken as is
    (tmp_path / "sm2" / "config.yaml").write_text("")
    assert new_run_folder(tmp_path / "sm2") == tmp_path / "sm2-2"
    assert new_run_folder(tmp_path / "sm2") == tmp_path / "sm2-2"  # still empty
    (tmp_path / "sm2-2" / "x").write_text("")
    assert new_run_folder(tmp_path / "sm2") == tmp_path / "sm2-3"


def _teacher_configs(tmp_path, synthetic_root):
    """configs/run.yaml naming configs/teacher.yaml relatively, as the shipped configs do."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "teacher.yaml").write_text("model: {architecture: cp_resnet, width: 4}\n")
    (configs / "run.yaml").write_text(
        f"data: {{root: {synthetic_root}}}\n"
        "augment: {dir: {folder: impulse_responses}}\n"
        "teachers: {train_count: 1, config: teacher.yaml}\n"
    )
    return configs


def test_the_command_a_refused_config_suggests_continues_the_run(
    tmp_path, synthetic_root, monkeypatch
):
    from asc_keras.config import with_resolved_paths
    from asc_keras.data.pipeline import with_data_root
    from asc_keras.recipe import check_paths
    from asc_keras.run_folder import locked_run_folder

    def as_run_training_reads(path):
        return with_resolved_paths(with_data_root(load_config(path)), path)

    configs = _teacher_configs(tmp_path, synthetic_root)
    run = tmp_path / "runs" / "a"
    with locked_run_folder(as_run_training_reads(configs / "run.yaml"), run):
        pass
    saved = load_config(run / "config.yaml")
    assert saved.teachers.config == str(configs / "teacher.yaml")
    # `python tools/train.py runs/a/config.yaml --out runs/a --resume`, from another folder.
    monkeypatch.chdir(tmp_path / "runs")
    again = as_run_training_reads(run / "config.yaml")
    assert check_config(again, run / "config.yaml")
    assert check_paths(again, run / "config.yaml").model.architecture == "cp_resnet"
    # The same teacher file named by its absolute path is the same config.
    absolute = (
        (configs / "run.yaml")
        .read_text()
        .replace("config: teacher.yaml", f"config: {configs / 'teacher.yaml'}")
    )
    (configs / "absolute.yaml").write_text(absolute)
    assert check_config(as_run_training_reads(configs / "absolute.yaml"), run / "config.yaml")


@pytest.mark.parametrize("fault", ["missing teacher config", "damaged logit file"])
def test_a_run_that_fails_its_preflight_leaves_nothing(tmp_path, synthetic_root, fault):
    from asc_keras.errors import UserError

    configs = _teacher_configs(tmp_path, synthetic_root)
    if fault == "missing teacher config":
        (configs / "teacher.yaml").unlink()
        expected = r"run.yaml: teachers.config: '.*teacher.yaml' does not exist"
    else:
        (tmp_path / "teacher.npz").write_bytes(b"PK\x03\x04 not a whole file")
        text = (
            (configs / "run.yaml")
            .read_text()
            .replace(
                "train_count: 1, config: teacher.yaml", f"logit_files: [{tmp_path / 'teacher.npz'}]"
            )
        )
        (configs / "run.yaml").write_text(text)
        expected = r"teacher.npz: not a readable .npz logit file"
    run = tmp_path / "run"
    with pytest.raises(UserError, match=expected):
        run_training(load_config(configs / "run.yaml"), run, configs / "run.yaml", verbose=0)
    assert not run.exists()


def test_a_busy_folder_is_refused_before_tensorflow_loads(tmp_path, synthetic_root):
    from tests.helpers import error_line, train_command

    config = tmp_path / "run.yaml"
    config.write_text(f"data: {{root: {synthetic_root}}}\n")
    command, env = train_command(config, tmp_path / "run")
    with RunLock(tmp_path / "run"):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", *command[1:]],
            env=env,
            capture_output=True,
            text=True,
        )
    assert done.returncode == 2
    assert error_line(done).startswith(
        f"error: run folder '{tmp_path / 'run'}' is in use by another run (pid {os.getpid()}"
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert "yaml" in imported and not [m for m in imported if m.startswith(("tensorflow", "keras"))]
