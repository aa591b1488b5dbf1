"""Atomic writes and the tools' error exits."""

import os

import pytest

from asc_keras import cli
from asc_keras.errors import UserError
from asc_keras.utils import OutputError, atomic_write_text


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "out.txt", "text")
    finally:
        os.umask(old)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_write_that_cannot_happen_names_the_path(tmp_path):
    (tmp_path / "a-file").write_text("in the way")
    with pytest.raises(OutputError, match=r"cannot write file '.*a-file/sub/out.txt': "):
        atomic_write_text(tmp_path / "a-file" / "sub" / "out.txt", "text")
    assert (tmp_path / "a-file").read_text() == "in the way"


def _exit_of(main, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.run(main)
    return exit_info.value.code, capsys.readouterr().err


def test_user_errors_and_os_errors_are_one_line_and_exit_2(capsys):
    def config_problem():
        raise UserError("run.yaml: key 'training.epochs' has value 0; expected a value >= 1")

    code, err = _exit_of(config_problem, capsys)
    assert code == 2 and err == "error: run.yaml: key 'training.epochs' has value 0; " + (
        "expected a value >= 1\n"
    )

    def unreadable():
        raise PermissionError(13, "Permission denied", "/data/meta.csv")

    code, err = _exit_of(unreadable, capsys)
    assert code == 2 and err == "error: /data/meta.csv: Permission denied\n"


def test_a_bug_keeps_its_traceback():
    def bug():
        raise ValueError("Input 0 of layer 'conv' is incompatible")  # e.g. from inside Keras

    with pytest.raises(ValueError, match="incompatible"):
        cli.run(bug)
