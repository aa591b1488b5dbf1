"""The stderr filter of the tools (`asc_keras.console`): TensorFlow's native log lines go,
everything else stays, in order, even when the process is killed."""

import subprocess
import sys
from pathlib import Path

from tests.helpers import NATIVE_PREFIXES, ROOT

NATIVE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795629324.144315    2772 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "I0000 00:00:1795629374.300577    2857 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
    "E0000 00:00:1795629395.642795    2905 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "W0000 00:00:1795629517.234254    3291 tf_tfl_flatbuffer_helpers.cc:364] Ignored "
    "output_format.",
    "I1125 17:55:22.123456    2905 service.cc:153] XLA service initialized",
    "fully_quantize: 0, inference_type: 6, input_inference_type: INT8, output_inference_type: INT8",
]
KEPT = [
    "F0000 00:00:1795629395.642795    2905 check.cc:1] Check failed: a fatal line stays",
    "Traceback (most recent call last):",
    "ValueError: Expected 3 dimensions",
    "To enable the following instructions: kept, no dropped line before it",
    "I0000 is not a log line",
    "Epoch 1/3",
]

# Loads asc_keras/console.py on its own (no Keras, no TensorFlow), installs the filter and
# writes the lines to file descriptor 2, as native code does.
SCRIPT = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("console", {path!r})
console = importlib.util.module_from_spec(spec)
spec.loader.exec_module(console)
console.quiet_native_logs(sys.argv[1:])
for line in {lines!r}:
    os.write(2, (line + "\\n").encode())
os.write(2, b"\\rprogress 50%")  # a progress bar's partial line
os.write(2, b"\\rprogress 100%\\n")
if os.environ.get("THEN"):
    exec(os.environ["THEN"])
"""


def run_script(*args, then=None, lines=None):
    code = SCRIPT.format(
        path=str(ROOT / "asc_keras" / "console.py"),
        lines=lines if lines is not None else [*NATIVE, *KEPT],
    )
    env = {"PATH": "/usr/bin:/bin", **({"THEN": then} if then else {})}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, env=env)
    done.stderr = done.stderr.decode()  # not text=True: that would turn "\r" into "\n"
    return done


def test_native_log_lines_are_dropped_and_the_rest_kept_in_order():
    done = run_script()
    assert done.returncode == 0
    assert done.stderr.split("\n") == [*KEPT, "\rprogress 50%\rprogress 100%", ""]


def test_verbose_keeps_every_line():
    done = run_script("--verbose")
    assert done.stderr.split("\n")[: len(NATIVE) + len(KEPT)] == [*NATIVE, *KEPT]


def test_a_child_process_is_filtered_through_the_inherited_stderr():
    lines = f"{NATIVE[4]}\nchild line\n".encode()
    write = f"import os; os.write(2, {lines!r})"
    child = f"import subprocess; subprocess.run([sys.executable, '-c', {write!r}])"
    done = run_script(then=child, lines=[])
    assert done.stderr.endswith("child line\n"), done.stderr
    assert "cuInit" not in done.stderr


def test_a_killed_process_loses_no_line_it_wrote():
    kill = "import signal; os.write(2, b'last words\\n'); os.kill(os.getpid(), signal.SIGKILL)"
    done = run_script(then=kill)
    assert done.returncode == -9
    assert done.stderr.endswith("last words\n")
    assert not any(line in done.stderr for line in NATIVE)


def test_console_scripts_are_installed_and_quiet():
    script = Path(sys.executable).parent / "asc-keras-complexity"
    assert script.is_file(), "pip install -e . installs the console scripts"
    done = subprocess.run([str(script), "sm1"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "sm1" in done.stdout and "MACs" in done.stdout
    assert not [line for line in done.stderr.splitlines() if line.startswith(NATIVE_PREFIXES)]
    for name in ("train", "predict", "evaluate", "fuse-teachers"):
        assert (Path(sys.executable).parent / f"asc-keras-{name}").is_file(), name


def test_tools_are_known_by_their_flag_or_their_console_script_name(monkeypatch):
    from asc_keras import console

    monkeypatch.delenv("ASC_KERAS_TOOL", raising=False)
    monkeypatch.setattr(sys, "argv", ["/venv/bin/asc-keras-predict", "model.tflite"])
    assert console.is_tool()
    monkeypatch.setattr(sys, "argv", ["my_notebook.py"])
    assert not console.is_tool()  # a library user's stderr is left alone
    monkeypatch.setenv("ASC_KERAS_TOOL", "1")
    assert console.is_tool()


def test_a_native_line_written_in_pieces_goes_whole():
    # The TFLite converter writes its settings line in two pieces.
    first, rest = NATIVE[-1].split(", output_inference_type")
    then = (
        f"os.write(2, {first.encode()!r}); import time; time.sleep(0.2); "
        f"os.write(2, b', output_inference_type: INT8\\n'); os.write(2, b'after\\n')"
    )
    done = run_script(then=then, lines=[])
    assert done.stderr.endswith("\rprogress 100%\nafter\n"), done.stderr
    assert "inference_type" not in done.stderr
