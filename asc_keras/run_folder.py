"""What keeps a run folder whole: one run at a time, one config, and no orphaned children.

- `RunLock`: an exclusive `flock` on `<run folder>/.lock`, held for the run's life. The kernel
  releases it when the holding process ends in any way (exit, exception, kill -9), so a lock
  left by a dead run never blocks the next one; a second run on a live folder is refused with
  the holder's pid. A child process (the QAT stage) inherits the lock: the folder stays locked
  until the child has ended too.
- `check_config`: a run folder keeps the config it was started with (`config.yaml`); a run
  with another config is refused, naming the keys that differ, before anything is written.
- `die_with_parent`: a child process that ends when its parent does (Linux), so killing a run
  never leaves a stage running on its own.
"""

import contextlib
import ctypes
import datetime
import fcntl
import os
import signal
import socket
import sys
from pathlib import Path

from asc_keras.config import config_to_dict, load_config, save_config
from asc_keras.errors import UserError
from asc_keras.utils import writing

DEVICE_MODELS = "device-models"  # RUN/device-models/DEVICE/: the stages of a device model


def device_stage(device):
    """The stage folder of `device`'s model, relative to the run folder."""
    return f"{DEVICE_MODELS}/{device}"


def quantized_folder(run_dir, device=None):
    """Where QAT writes: RUN/quantized/ for the general student, RUN/device-models/DEVICE/
    quantized/ for the model of `device`."""
    run_dir = Path(run_dir)
    return run_dir / "quantized" if device is None else run_dir / device_stage(device) / "quantized"


LOCK_NAME = ".lock"
# A child started by a locked run: the inherited descriptor of the lock, and the parent's pid.
INHERITED_LOCK = "ASC_KERAS_RUN_LOCK_FD"
PARENT_PID = "ASC_KERAS_PARENT_PID"


class RunFolderError(UserError):
    """A run folder that this run may not use (in use, or started with another config)."""


class RunLock:
    """An exclusive lock on a run folder for the life of this process (and its children).

    Example (a child started with `pass_fds` and `env` shares the lock):
        >>> import subprocess, sys, tempfile
        >>> with RunLock(tempfile.mkdtemp()) as lock:
        ...     child = [sys.executable, "-c", "print('locked with my parent')"]
        ...     done = subprocess.run(child, pass_fds=lock.pass_fds, env={**os.environ, **lock.env})
    """

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.fd = None

    def acquire(self):
        inherited = _inherited_lock(self.path)
        if inherited is not None:
            self.fd, self._owned = inherited, False
            return self
        with writing(self.path, "the lock of run folder"):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderError(
                f"run folder {str(self.run_dir)!r} is in use by another run ({holder}); wait "
                f"for it to end, or choose another --out"
            ) from None
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        self.fd, self._owned = fd, True
        return self

    def release(self):
        if self.fd is not None and self._owned:
            os.close(self.fd)  # closing the last descriptor releases the flock
        self.fd = None

    @property
    def pass_fds(self):
        """The descriptors a child must inherit to share the lock."""
        return (self.fd,)

    @property
    def env(self):
        """Environment variables that tell a child it holds this lock through its parent."""
        return {INHERITED_LOCK: str(self.fd), PARENT_PID: str(os.getpid())}

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _inherited_lock(path):
    """The descriptor of `path`'s lock that this process inherited from a locked parent."""
    value = os.environ.get(INHERITED_LOCK)
    if not value:
        return None
    try:
        fd = int(value)
        held, wanted = os.fstat(fd), os.stat(path)
    except (ValueError, OSError):
        return None
    return fd if (held.st_dev, held.st_ino) == (wanted.st_dev, wanted.st_ino) else None


def die_with_parent():
    """Makes the kernel kill this process when the parent that started it ends (Linux).

    A no-op where the parent is not a run (no PARENT_PID) or the system has no prctl."""
    parent = os.environ.get(PARENT_PID)
    if not parent or not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != int(parent):  # the parent died before the line above
        os._exit(1)


def _differences(saved, now, prefix=""):
    keys = list(saved) + [k for k in now if k not in saved]
    for key in keys:
        name = f"{prefix}{key}"
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            yield from _differences(a, b, f"{name}.")
        elif a != b:
            yield f"{name}: {a!r} in the folder, {b!r} now"


def check_config(config, path):
    """Refuses `config` when `path` (a run folder's config.yaml) holds a different one.

    Returns whether `path` exists. The error lists every differing key."""
    path = Path(path)
    if not path.is_file():
        return False
    saved, now = config_to_dict(load_config(path)), config_to_dict(config)
    for data in (saved["data"], now["data"]):  # folders written relative and absolute match
        data["root"] = data["root"] and str(Path(data["root"]).resolve())
    differences = list(_differences(saved, now))
    if differences:
        run_dir = path.parent
        raise RunFolderError(
            f"run folder {str(run_dir)!r} was started with another config ({path}): "
            f"{'; '.join(differences)}. To continue that run, use its config "
            f"(python tools/train.py {path} --out {run_dir} --resume); for a new run, pass "
            f"--new-run or another --out. Nothing was changed."
        )
    return True


@contextlib.contextmanager
def locked_run_folder(config, run_dir):
    """Holds `run_dir`'s lock for the block, with `config` checked against (or saved as) its
    config.yaml. A refused config writes nothing, not even the lock file. Yields the lock."""
    path = Path(run_dir) / "config.yaml"
    check_config(config, path)
    with RunLock(run_dir) as lock:
        if not check_config(config, path):  # checked again: another run may have started
            save_config(config, path)
        remove_partial_files(run_dir)
        yield lock


@contextlib.contextmanager
def locked_before_loading(run_dir):
    """Holds `run_dir`'s lock from the command line on, before TensorFlow loads, so that a
    second run on a busy folder is refused at once; the run's own `RunLock` (and its QAT
    child) share it. A run that ends without writing config.yaml (refused before its first
    stage) leaves no lock file, nor the folder if this created it."""
    run_dir = Path(run_dir)
    created_dir, created_lock = not run_dir.exists(), not (run_dir / LOCK_NAME).exists()
    lock = RunLock(run_dir).acquire()
    os.environ[INHERITED_LOCK] = str(lock.fd)
    try:
        yield lock
    finally:
        os.environ.pop(INHERITED_LOCK, None)
        if not (run_dir / "config.yaml").exists():
            if created_lock:
                (run_dir / LOCK_NAME).unlink(missing_ok=True)
            if created_dir and not any(run_dir.iterdir()):
                run_dir.rmdir()
        lock.release()


def remove_partial_files(run_dir):
    """Removes the temporary files (`asc_keras.utils.atomic_path`) that a killed run left in
    `run_dir`: with the folder locked, no live writer owns one."""
    for partial in Path(run_dir).rglob(".tmp-*"):
        if partial.is_file():
            partial.unlink(missing_ok=True)


def new_run_folder(out):
    """`out` if it is missing or empty, else the first free `out-2`, `out-3`, ... (created)."""
    out = Path(out)
    candidates = [out] + [out.with_name(f"{out.name}-{n}") for n in range(2, 10_000)]
    for candidate in candidates:
        with writing(candidate, "run folder"):
            candidate.parent.mkdir(parents=True, exist_ok=True)
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                if candidate.is_dir() and not any(candidate.iterdir()):
                    return candidate
    raise RunFolderError(f"no free run folder name beside {str(out)!r}")
