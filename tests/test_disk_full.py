"""A full disk, done for real on a small tmpfs: one line naming the file, exit status 2, and
after space is freed `--resume` continues from the last complete checkpoint. Needs root (the
tests mount tmpfs; CI runs as root)."""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.helpers import ROOT, train_command, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """A function that mounts a tmpfs of `megabytes` and returns its folder."""
    mounted = []

    def mount(megabytes):
        folder = tmp_path / f"disk-{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder):
    """Takes every free byte of `folder`'s file system; returns the filler file. In pieces: a
    tmpfs gives back the whole of a request it cannot meet, and the run under test writes
    while the disk fills."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        end = 0
        for piece in (1 << 20, 1 << 16, 1 << 12):
            while True:
                try:
                    os.posix_fallocate(f.fileno(), end, piece)
                except OSError:
                    break
                end += piece
    return filler


def assert_one_line_disk_full(done):
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "No space left on device" in done.stderr, last
    return last


def test_a_cache_on_a_full_disk_is_one_line_not_a_crash(small_disk, synthetic_root):
    disk = small_disk(2)  # the train split needs several MB
    config = disk / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"cache_dir": str(disk / "cache")}}))
    command = [sys.executable, str(ROOT / "tools" / "prepare_dataset.py"), str(config)]
    done = subprocess.run(
        [*command, "--data-root", str(synthetic_root), "--split", "train"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != -signal.SIGBUS
    last = assert_one_line_disk_full(done)
    assert "waveforms.partial.npy" in last and "it needs" in last


def without_class(synthetic_root, folder, scene):
    """A copy of the synthetic dataset whose training split has no clip of `scene`."""
    shutil.copytree(synthetic_root, folder, ignore=shutil.ignore_patterns("asc_keras_cache"))
    split = folder / "evaluation_setup" / "fold1_train.csv"
    lines = split.read_text().splitlines()
    split.write_text("\n".join(line for line in lines if f"\t{scene}" not in line) + "\n")
    return folder


def test_a_run_on_a_full_disk_stops_with_one_line_and_resumes(small_disk, synthetic_root, tmp_path):
    """The disk fills after the first epoch of the student, then again after the first QAT
    epoch: each time one line; freed, the run resumes from that checkpoint and finishes.
    Its training split lacks a class: the run warns in its output, summary and page."""
    disk = small_disk(64)
    synthetic_root = without_class(synthetic_root, tmp_path / "data", "tram")
    config = disk / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(synthetic_root), "cache_dir": str(disk / "cache")},
                "augment": {"dir": {"folder": "impulse_responses"}},
                "frontend": {"n_mels": 64, "hop_length": 1000},
                "model": {"variant": "sm1"},
                "training": {"epochs": 2, "batch_size": 16, "warmup_epochs": 0},
                "distillation": {"enabled": False},
                "quantization": {
                    "epochs": 2,
                    "freeze_epochs": 1,
                    "representative_batches": 1,
                    "micro_check_inputs": 2,
                },
            }
        )
    )
    run = disk / "run"
    command, env = train_command(config, run, "--resume")
    outputs = []
    for marker in (
        run / "student" / "checkpoints" / "epoch-0001.json",
        run / "quantized" / "qat-checkpoints" / "free" / "checkpoint",
    ):
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert wait_for(marker, process, poll=0.01), process.communicate()[1][-3000:]
        filler = fill(disk)
        out, err = process.communicate()
        assert_one_line_disk_full(
            subprocess.CompletedProcess(command, process.returncode, out, err)
        )
        outputs.append(out)
        filler.unlink()
    finished = subprocess.run(command, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "resuming student from epoch 1" in outputs[1]
    assert "resuming QAT from epoch 1" in finished.stdout
    warning = "the training split 'train' has no clip of class(es) tram"
    assert f"warning: {warning}" in outputs[0]
    assert json.loads((run / "summary.json").read_text())["warnings"][0].startswith(warning)
    assert "has no clip of class(es) tram" in (run / "report.html").read_text()
    history = np.genfromtxt(run / "student" / "history.csv", delimiter=",", names=True)
    assert list(history["epoch"]) == [1, 2]
    assert (run / "quantized" / "model_int8.tflite").is_file()
    assert sorted(p.name for p in run.rglob(".tmp-*")) == []
