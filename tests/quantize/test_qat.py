"""QAT calibration, loss and checkpoints. tfmot switches its process to legacy Keras, so the
checks run in a subprocess (as the quantization stage does), all in one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    """tests/quantize/qat_checks.py in its own process (tfmot: legacy Keras): the results of
    every check, and the folder the checkpoint check wrote in."""
    folder = tmp_path_factory.mktemp("qat-checks")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.quantize.qat_checks", str(folder)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), folder


def test_calibration_sets_min_max_ranges_and_batchnorms_fold(checks):
    result = checks[0]["calibration"]
    # The input quantizer spans exactly what it saw (tfmot would start at [-6, 6]).
    assert abs(result["input_range"][0] - result["observed"][0]) < 1e-5
    assert abs(result["input_range"][1] - result["observed"][1]) < 1e-5
    assert result["bn_layers"] > 0 and result["bn_unchanged"]
    # Fake quantisation with calibrated ranges stays close to the float model (a BatchNorm
    # sm1: a random ResidualNorm model's logits are all near 0); with tfmot's initial
    # ranges the clipped input alone changes the logits far more.
    assert result["error_calibrated"] < 0.05 * result["logit_scale"]
    assert result["error_calibrated"] < result["error_fresh"] / 10
    # Every BatchNorm, the depthwise ones included, is folded into its convolution.
    assert result["tflite_params"] == result["folded_params"]
    # Average pooling keeps its input's scale: no requantising QUANTIZE op inside the model.
    assert "AVERAGE_POOL_2D" in result["ops"] and "QUANTIZE" not in result["ops"]
    # Every inner ResidualNorm tensor has a fake quantizer with a calibrated range, and the
    # int8 model takes those ranges. (Without them the converter gave (x - mean), its product
    # with rsqrt and lambda * x all the output's scale: in the demo student, 20 steps over
    # the range of (x - mean).)
    ranges = result["inner_ranges"]
    assert sorted(ranges) == sorted(result["inner_tensors"])
    assert all(low <= 0 <= high and [low, high] != [-6, 6] for low, high in ranges.values())
    for name, scale in result["inner_scales"].items():
        low, high = ranges[name]
        assert abs(scale - (high - low) / 255) < 0.01 * scale, (name, scale, low, high)
    # The reciprocal square root r takes the maximum, but no more than the smallest non-zero
    # int8 variance gives, r + lambda that plus lambda; both keep their ranges while QAT
    # trains; every other range is the min / max and moves with training.
    assert result["outlier_ranges"] == ["rsqrt", "gain"]
    min_max, trained = result["min_max_ranges"], result["trained_ranges"]
    variance_step = (ranges["variance"][1] - ranges["variance"][0]) / 255
    cap = min(1 / (variance_step / 2 + result["epsilon"]) ** 0.5, min_max["rsqrt"][1])
    assert ranges["rsqrt"][0] == min_max["rsqrt"][0] and ranges["gain"][0] == min_max["gain"][0]
    assert abs(ranges["rsqrt"][1] - cap) < 1e-4 * cap
    gain_cap = min(cap + result["largest_lambda"], min_max["gain"][1])
    assert abs(ranges["gain"][1] - gain_cap) < 1e-4 * gain_cap
    for name, (low, high) in ranges.items():
        if name in result["outlier_ranges"]:
            assert trained[name] == [low, high], name
        else:
            assert [low, high] == min_max[name], name
    assert any(
        trained[name] != ranges[name] for name in ranges if name not in result["outlier_ranges"]
    )


def test_qat_fine_tunes_on_the_distillers_eq5_loss(checks):
    import numpy as np

    out = checks[0]["loss"]
    labels, teacher, student = (np.array(out[k]) for k in ("labels", "teacher", "student"))

    def log_softmax(x):
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    hard = -log_softmax(student)[np.arange(8), labels]
    t, s = log_softmax(teacher / 2.0), log_softmax(student / 2.0)
    kl = (np.exp(t) * (t - s)).sum(axis=1)
    np.testing.assert_allclose(out["kd"], 0.3 * hard + 0.7 * 4.0 * kl, rtol=1e-5)
    np.testing.assert_allclose(out["hard"], hard, rtol=1e-5)
    assert all(np.isfinite(out["loss"])) and out["loss"][1] < out["loss"][0]
    assert out["traces"] == 1


def test_a_qat_checkpoint_of_another_graph_is_a_clear_error(checks):
    result, run = checks
    folder = run / "quantized" / "qat-checkpoints" / "free"
    assert result["checkpoint"]["same graph"] == 1
    message = result["checkpoint"]["another graph"]
    assert message.startswith(f"{folder / 'ckpt-1'}: a QAT checkpoint of another graph")
    assert f"delete {run / 'quantized'} and rerun with --resume" in message
