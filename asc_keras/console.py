"""Quiet TensorFlow's native log lines in the project's tools, before TensorFlow loads.

TensorFlow's C++ code logs through absl, and the lines it writes while it loads (before
absl is initialised) ignore `TF_CPP_MIN_LOG_LEVEL`: `I0000 00:00:... cudart_stub.cc:31] Could
not find cuda drivers` on every machine without a GPU, `E0000 ... failed call to cuInit`,
oneDNN notes. They look like failures and are not. So a tool's stderr goes through a small
filter process that drops exactly those lines (info, warning and error lines in absl's
format, and the banner absl prints before them); fatal lines and everything else pass
unchanged, partial lines (progress bars) at once; a dropped line goes whole, however many
writes it took.

The package calls `quiet_native_logs` before it imports Keras when it runs as a tool: a
`tools/*.py` script sets `ASC_KERAS_TOOL=1` before its first `asc_keras` import, and the
`asc-keras-*` console scripts are known by their name. Code that imports asc_keras as a
library keeps its stderr untouched. `--verbose` on the command
line, or `ASC_KERAS_VERBOSE=1`, keeps every line. Child processes (the QAT stage) inherit the
filtered stderr and the setting. Standard library only: this module runs before TensorFlow.
"""

import os
import re
import subprocess
import sys

VERBOSE_ENV = "ASC_KERAS_VERBOSE"
FILTER_ENV = "ASC_KERAS_STDERR_FILTER"  # the pipe (device:inode) a filter reads, once installed

# An absl line below FATAL (severity, MMDD, time, thread id, file:line]), and the settings
# line the TFLite converter prints to stderr on every int8 conversion.
NATIVE_LOG_LINE = re.compile(
    rb"[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\]"
    rb"|fully_quantize: \d+, inference_type: \d+, input_inference_type: "
)
ABSL_BANNER = b"WARNING: All log messages before absl::InitializeLog() is called"
# Lines that continue a dropped message (TensorFlow's CPU feature note spans two lines).
CONTINUATIONS = (b"To enable the following instructions:",)

_FILTER = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the tool; this drains its output
line = re.compile(LINE)
banner, continuations = BANNER, CONTINUATIONS
longest = max(len(banner), 40)
start, passing, skipping, dropped = b"", False, False, False

def decide(text):
    global dropped
    drop = bool(line.match(text)) or text.startswith(banner) or (
        dropped and text.startswith(continuations)
    )
    dropped = drop
    return drop

while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    out = []
    for piece in chunk.splitlines(keepends=True):
        ends = piece.endswith((b"\n", b"\r"))
        if passing:
            out.append(piece)
        elif skipping:  # the rest of a dropped line, written in several pieces
            pass
        else:
            start += piece
            if ends or len(start) >= longest or not start[:1] in b"IWEf":
                if decide(start):
                    skipping = not ends
                else:
                    out.append(start)
                    passing = not ends
                start = b""
            continue
        if ends:
            passing = skipping = False
    data = memoryview(b"".join(out))
    while data:
        data = data[os.write(1, data):]
if start and not decide(start):
    os.write(1, start)
"""


_filter = None


def is_tool():
    """Whether this process is one of the project's tools (see the module's doc)."""
    argv = getattr(sys, "argv", None) or [""]  # embedded interpreters may have no argv
    script = os.path.basename(argv[0] or "")
    return os.environ.get("ASC_KERAS_TOOL") == "1" or script.startswith("asc-keras-")


def is_tool_process():
    """Whether this process itself is a tool (`tools/<name>.py` or an `asc-keras-*` console
    script), not a child or a test that inherited a tool's environment."""
    argv = getattr(sys, "argv", None) or [""]
    script = argv[0] or ""
    name = os.path.basename(script)
    in_tools = os.path.basename(os.path.dirname(os.path.abspath(script))) == "tools"
    return is_tool() and (name.startswith("asc-keras-") or (in_tools and name.endswith(".py")))


def is_verbose(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    return "--verbose" in argv or os.environ.get(VERBOSE_ENV) == "1"


def _stderr_id():
    stat = os.fstat(2)
    return f"{stat.st_dev}:{stat.st_ino}"


def quiet_native_logs(argv=None):
    """Filters this process's stderr (file descriptor 2, so native code is caught too) unless
    `--verbose` is in `argv` (default: the command line) or a parent already filters it."""
    if is_verbose(argv):
        os.environ[VERBOSE_ENV] = "1"  # the QAT child process keeps every line too
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        if os.environ.get(FILTER_ENV) == _stderr_id():
            return  # inherited from the process that started this one
    except OSError:
        return  # no stderr at all: nothing to filter
    code = (
        _FILTER.replace("LINE", repr(NATIVE_LOG_LINE.pattern))
        .replace("BANNER", repr(ABSL_BANNER))
        .replace("CONTINUATIONS", repr(CONTINUATIONS))
    )
    read, write = os.pipe()
    original = os.dup(2)
    global _filter  # it ends when every writer (this process, its children) has closed stderr
    command = [sys.executable, "-I", "-S", "-c", code]
    _filter = subprocess.Popen(command, stdin=read, stdout=original)
    os.close(read)
    os.close(original)
    sys.stderr.flush()
    os.dup2(write, 2)
    os.close(write)
    os.environ[FILTER_ENV] = _stderr_id()
