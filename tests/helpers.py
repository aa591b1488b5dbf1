"""Helpers of the tests: the checks every asc_keras layer must pass (in the spirit of
KerasHub's `run_layer_test`), and running tools/train.py as a user would."""

import fcntl
import html.parser
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# TensorFlow's native log lines, which no tool may print (asc_keras.console).
NATIVE_PREFIXES = ("I0000", "W0000", "E0000", "WARNING: All log messages before absl")


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_shape,
    expected_output_shape,
    tmp_path,
    expected_weights=None,
):
    """Build, weight counts, symbolic call, call, config and JSON round trips, a mixed-precision
    call, one training step and a `.keras` round trip of a layer. `expected_weights` is
    (trainable, non-trainable) variable counts after the build."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=input_shape).astype("float32")

    layer = layer_cls(**init_kwargs)
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.shape == tuple(expected_output_shape)
    assert tuple(layer.compute_output_shape(input_shape)) == tuple(expected_output_shape)
    assert np.all(np.isfinite(y))
    if expected_weights is not None:
        counts = (len(layer.trainable_weights), len(layer.non_trainable_weights))
        assert counts == tuple(expected_weights), counts

    # A symbolic call (unknown batch) gives the shape compute_output_shape promises.
    symbolic = layer_cls(**init_kwargs)(keras.Input(input_shape[1:]))
    assert tuple(symbolic.shape) == (None, *expected_output_shape[1:])

    # JSON round trip of the serialized layer, as a saved model's config goes through.
    text = json.dumps(keras.saving.serialize_keras_object(layer))
    revived = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(revived) is layer_cls and revived.get_config() == layer.get_config()

    # Mixed precision: float16 compute, float32 variables.
    mixed = layer_cls(**init_kwargs, dtype="mixed_float16")
    out = mixed(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in mixed.weights)
    reference = mixed_reference(mixed, layer_cls, init_kwargs, x)
    got = keras.ops.convert_to_numpy(out).astype("float32")
    np.testing.assert_allclose(got, reference, rtol=0.05, atol=0.05)

    # Config round trip: a layer rebuilt from its config with the same weights computes the same.
    config = layer.get_config()
    for key, value in init_kwargs.items():
        assert config[key] == value or tuple(np.atleast_1d(config[key])) == tuple(
            np.atleast_1d(value)
        ), key
    clone = layer_cls.from_config(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x)), y, rtol=1e-6, atol=1e-6)

    # A model holding the layer trains one step, then survives a `.keras` save and load.
    inputs = keras.Input(input_shape[1:])
    model = keras.Model(inputs, layer_cls(**init_kwargs)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, rng.normal(size=expected_output_shape), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    assert any(changed), "no weight moved after a training step"

    path = tmp_path / f"{layer_cls.__name__}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    return layer


def mixed_reference(mixed, layer_cls, init_kwargs, x):
    """The float32 layer's output with `mixed`'s weights (float16 rounding is the only change)."""
    layer = layer_cls(**init_kwargs)
    layer(x)
    layer.set_weights(mixed.get_weights())
    return keras.ops.convert_to_numpy(layer(x))


def tool_command(name, *args):
    """The command line of tools/NAME ARGS, and its environment (TensorFlow backend)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    return [sys.executable, str(ROOT / "tools" / name), *map(str, args)], env


def run_tool(name, *args, check=True):
    """tools/NAME ARGS on the TensorFlow backend; the completed process."""
    command, env = tool_command(name, *args)
    return subprocess.run(command, env=env, capture_output=True, text=True, check=check)


def call_tool(name, *args):
    """What tools/NAME.py ARGS does, run in this process (`cli.run` of the tool's `main`, as its
    script and console script run it): a CompletedProcess with its exit status, stdout and
    stderr, without a new Python and TensorFlow start. test_console.py runs the scripts
    themselves; training runs (train.py) keep their own processes."""
    import contextlib
    import importlib
    import io

    from asc_keras import cli

    module = importlib.import_module(f"asc_keras.commands.{name.removesuffix('.py')}")
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.run(lambda: module.main(argv))
        except SystemExit as done:
            code = done.code or 0
    return subprocess.CompletedProcess(
        ["tools/" + name, *argv], code, out.getvalue(), err.getvalue()
    )


def train_command(config, out, *flags):
    """tools/train.py CONFIG --out OUT --quiet FLAGS, and its environment."""
    command, env = tool_command("train.py", config, "--out", out, "--quiet", *flags)
    # No emulated Cortex-M in recipe tests (tests/test_mcu.py covers it): a fresh TFLite
    # Micro build would take minutes.
    env.pop("ASC_TFLM_DIR", None)
    return command, env


def _found(path):
    """Whether `path` exists; a path whose name holds `*` is a glob in its folder."""
    path = Path(path)
    if "*" in path.name:
        return any(path.parent.glob(path.name))
    return path.exists()


def error_line(done):
    """The last line a finished tool wrote to stderr: where its one-line error goes."""
    return done.stderr.strip().splitlines()[-1]


def wait_for(path, process, timeout=600, poll=0.05):
    """Waits until `path` (or a glob, see `_found`) exists (True) or `process` ends or time
    runs out (False)."""
    deadline = time.time() + timeout
    while not _found(path) and process.poll() is None and time.time() < deadline:
        time.sleep(poll)
    return _found(path)


def stage_processes(run_dir):
    """Pids of QAT stage processes working on `run_dir`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"asc_keras.quantize.stage" in command and str(run_dir).encode() in command:
            found.append(int(entry.name))
    return found


def lock_is_held(run_dir):
    """Whether a process holds `run_dir`'s run lock now."""
    try:
        fd = os.open(Path(run_dir) / ".lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it the lock this took
    return False


def kill_at(config, run_dir, marker, resume=True, poll=0.05):
    """Starts the run (with --resume), kills it with SIGKILL once `marker` exists; returns
    whether it did, and the end of the run's output (what it printed before the kill)."""
    command, env = train_command(config, run_dir, *(["--resume"] if resume else []))
    log = Path(run_dir).parent / f"kill-{time.monotonic_ns()}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        reached = wait_for(marker, process, poll=poll)
        process.send_signal(signal.SIGKILL)
        process.wait()
    return reached, log.read_text(errors="replace")


KILLED_STAGES = ("teachers/teacher-0", "student", "student-no-teacher")
# Where each training stage is killed, in turn. Every kind of stage is killed once in the
# middle and once after its LAST epoch's checkpoint, before last.keras exists (the tiny run
# has 4 epochs): a classifier trained on labels (the teacher and the labels-only student
# share that code) after the teacher's first epoch and the labels-only student's last; the
# distilled student while its best.keras is being written, then after its last epoch.
KILL_POINTS = {
    "teachers/teacher-0": ("checkpoints/epoch-0001.json",),
    "student": (".tmp-*-best.keras", "checkpoints/epoch-0004.json"),
    "student-no-teacher": ("checkpoints/epoch-0004.json",),
}
# The device model of the tiny recipe (2 epochs), after the general student's QAT: killed
# after its last epoch's checkpoint (before last.keras), then in its QAT.
DEVICE_STAGE = "device-models/b"
KILL_POINTS[DEVICE_STAGE] = ("checkpoints/epoch-0002.json",)
# The QAT child: after its first free epoch, and after its last (frozen) epoch.
QAT_KILL_POINTS = ("qat-checkpoints/free/checkpoint", "qat-checkpoints/frozen/checkpoint")


def wait_for_qat_exit(run):
    """After a kill -9 of a run: the kernel ends its QAT child (its parent died). Waits until
    it is gone and, since a dying process leaves /proc before it closes its files, until the
    run's lock is free (at most a minute)."""
    deadline = time.time() + 60
    while (stage_processes(run) or lock_is_held(run)) and time.time() < deadline:
        time.sleep(0.1)


def kill_every_stage_then_resume(config, run):
    """Runs `config` in `run`, killed (kill -9) at each of KILL_POINTS and QAT_KILL_POINTS in
    turn, each time resumed with --resume; then resumes it to the end. Returns what was seen
    on the way, for the test to check."""
    seen = {}
    for index, stage in enumerate(KILLED_STAGES):
        seen[stage] = []
        for point, marker in enumerate(KILL_POINTS[stage]):
            # A file being written shows for a moment only: look for it often.
            poll = 0.002 if ".tmp-" in marker else 0.05
            first_kill = index == 0 and point == 0
            killed, output = kill_at(
                config, run, run / stage / marker, resume=not first_kill, poll=poll
            )
            seen[stage].append(
                {
                    "killed at": marker if killed else output[-3000:],
                    "finished before the kill": (run / stage / "last.keras").exists(),
                }
            )
            if first_kill:
                command, env = train_command(config, run)
                seen["rerun without --resume"] = subprocess.run(
                    command, env=env, capture_output=True, text=True
                )
    seen["qat"] = []
    for marker in QAT_KILL_POINTS:
        killed, output = kill_at(config, run, run / "quantized" / marker)
        wait_for_qat_exit(run)
        seen["qat"].append(
            {
                "killed at": marker if killed else output[-3000:],
                "left running": stage_processes(run),
                "finished before the kill": (run / "quantized" / "summary.json").exists(),
            }
        )
    device = DEVICE_STAGE
    seen[device] = []
    for marker in KILL_POINTS[device]:
        killed, output = kill_at(config, run, run / device / marker)
        # The first of these runs resumes the general QAT killed after its last epoch.
        seen.setdefault("general qat resumed", "resuming QAT from epoch 3" in output)
        finished = (run / device / "last.keras").exists()
        seen[device].append(
            {
                "killed at": marker if killed else output[-3000:],
                "finished before the kill": finished,
            }
        )
    killed, output = kill_at(config, run, run / device / "quantized" / QAT_KILL_POINTS[0])
    wait_for_qat_exit(run)
    seen["device qat"] = {
        "killed at": QAT_KILL_POINTS[0] if killed else output[-3000:],
        "left running": stage_processes(run),
    }
    command, env = train_command(config, run, "--resume")
    seen["resumed to the end"] = subprocess.run(command, env=env, capture_output=True, text=True)
    return seen


class PageParser(html.parser.HTMLParser):
    """The tables (caption, rows of cell texts), images and outside references of a page."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.outside = [], [], []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.outside.append(attrs[key])
        if tag == "img":
            self.images.append(attrs.get("alt"))
        elif tag == "table":
            self.tables.append({"caption": "", "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th", "caption"):
            self._cell = tag

    def handle_endtag(self, tag):
        if tag in ("td", "th", "caption"):
            self._cell = None

    def handle_data(self, data):
        if self._cell == "caption":
            self.tables[-1]["caption"] += data
        elif self._cell:
            self.tables[-1]["rows"][-1].append(data)


def parse_page(path):
    parser = PageParser()
    parser.feed(path.read_text())
    return parser


def printed_tables(log):
    """Every table of a run's console output: {title: [[cell, ...] per row]} (header first)."""
    lines, tables = log.splitlines(), {}
    for i, line in enumerate(lines):
        if re.fullmatch(r"-+( +-+)+", line) and i >= 2:
            rows = [lines[i - 1]]
            for row in lines[i + 1 :]:
                if not row.strip() or row.startswith(("==", "accuracy drop")) or ":" in row:
                    break
                rows.append(row)
            tables[lines[i - 2]] = [re.split(r"  +", r.strip()) for r in rows]
    return tables
