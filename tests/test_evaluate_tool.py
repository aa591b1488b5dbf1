"""tools/evaluate.py refuses a model file it cannot run, before reading any data."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.tflite", None, "missing.tflite' does not exist"),
        ("garbage.tflite", b"not a flatbuffer at all", "is not a TFLite model"),
        ("missing.keras", None, "missing.keras' does not exist"),
    ],
)
def test_a_model_file_that_cannot_run_is_a_clear_error(tmp_path, name, content, message):
    model = tmp_path / name
    if content is not None:
        model.write_bytes(content)
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  variant: sm1\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "evaluate.py"), str(model), str(config)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr
