import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sm1_is_all_int8_and_runs_alike_in_tflite_micro():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "check_int8_variants.py"),
            "--variants",
            "sm1",
            "--norms",
            "residual",
            "batch",
            "--inputs",
            "100",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    rows = json.loads(result.stdout[result.stdout.index("[") :])
    for row in rows:
        assert row["inputs"] == 100 and row["arena_bytes"] > 0
        assert row["tflite_params"] == row["folded_params"], row  # every BatchNorm folded
        # TFLite Micro computes what LiteRT's reference kernels compute, output for output.
        assert row["mismatched_outputs"] == 0 and row["max_int8_difference"] == 0, row
    assert result.returncode == 0, result.stderr[-2000:]
    # The emulated Cortex-M4 figures, or one line saying why they are missing.
    measured = all("m4_cmsis_nn_instructions" in r for r in rows)
    assert measured or "M4 CMSIS-NN figures: not measured (" in result.stderr
    residual, batch = rows
    assert {"AVERAGE_POOL_2D", "RSQRT"} <= set(residual["ops"])
    assert "BATCH_MATMUL" in residual["ops"]  # ResidualNorm's sum of squares
    assert "MEAN" not in residual["ops"] + batch["ops"] and "BATCH_MATMUL" not in batch["ops"]
    assert "RSQRT" not in batch["ops"] and batch["mismatched_outputs"] == 0
