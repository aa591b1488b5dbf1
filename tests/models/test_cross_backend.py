"""The same weights give the same logits on the TensorFlow, JAX and PyTorch backends: the
students of both norms from their weights, and a saved waveform model (front end included)
loaded from its `.keras` file. Each other backend computes every case in one process of its
own (tests/models/backend_logits.py); this process's backend computes them here, from the
same files."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from asc_keras import ds_flexinet, with_frontend
from asc_keras.audio import LogMel
from asc_keras.config import FrontEndConfig
from tests.helpers import ROOT
from tests.models import backend_logits

BACKENDS = ("tensorflow", "jax", "torch")
STUDENTS = [("sm2", "residual"), ("sm1", "batch")]


def student_case(variant, norm, folder, rng):
    model = ds_flexinet(variant, norm=norm)
    # Random BN statistics and lambdas, so inference-mode normalisation is really compared.
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype("float32") for w in model.weights])
    for layer in model.layers:
        for w in layer.weights:
            if "variance" in w.path:
                w.assign(np.abs(keras.ops.convert_to_numpy(w)) + 0.5)
    weights = folder / f"{variant}-{norm}.weights.h5"
    model.save_weights(weights)
    inputs = folder / f"{variant}-{norm}.inputs.npy"
    np.save(inputs, rng.normal(size=(4, 256, 64, 1)).astype("float32"))
    case = {"variant": variant, "norm": norm, "weights": str(weights), "inputs": str(inputs)}
    return case, model.predict(np.load(inputs), verbose=0)


def waveform_case(folder, rng):
    student = ds_flexinet("sm1")
    waveforms = (rng.normal(0, 0.1, (4, 32000))).astype("float32")
    logits = student.predict(np.asarray(LogMel(FrontEndConfig())(waveforms))[..., None], verbose=0)
    with_frontend(student, FrontEndConfig()).save(folder / "waveform.keras")
    np.save(folder / "waveforms.npy", waveforms)
    case = {"model": str(folder / "waveform.keras"), "inputs": str(folder / "waveforms.npy")}
    return case, logits


@pytest.fixture(scope="module")
def logits(tmp_path_factory):
    """case name -> {"expected": this process's logits, backend: that backend's logits}."""
    folder = tmp_path_factory.mktemp("cross-backend")
    rng = np.random.default_rng(0)
    cases = {f"{v}-{n}": student_case(v, n, folder, rng) for v, n in STUDENTS}
    cases["waveform"] = waveform_case(folder, np.random.default_rng(3))
    results = {name: {"expected": expected} for name, (_, expected) in cases.items()}
    for backend in BACKENDS:
        if backend == keras.backend.backend():  # this process: from the saved files too
            for name, (case, _) in cases.items():
                results[name][backend] = backend_logits.logits(case)
            continue
        run = folder / backend
        run.mkdir()
        jobs = [{**case, "out": str(run / f"{name}.npy")} for name, (case, _) in cases.items()]
        (run / "cases.json").write_text(json.dumps(jobs))
        done = subprocess.run(
            [sys.executable, "-m", "tests.models.backend_logits", str(run / "cases.json")],
            env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"},
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert (run / "backend.txt").read_text() == backend
        for name in cases:
            results[name][backend] = np.load(run / f"{name}.npy")
    return results


@pytest.mark.parametrize("variant, norm", STUDENTS)
def test_same_weights_same_logits_on_every_backend(variant, norm, logits):
    results = logits[f"{variant}-{norm}"]
    assert np.abs(results["tensorflow"]).max() > 1e-2, "degenerate logits prove nothing"
    np.testing.assert_allclose(results["tensorflow"], results["expected"], atol=1e-5)
    for backend in ("jax", "torch"):
        np.testing.assert_allclose(results[backend], results["tensorflow"], atol=1e-4, rtol=1e-4)


def test_a_saved_waveform_model_gives_the_same_logits_on_every_backend(logits):
    results = logits["waveform"]
    for backend in BACKENDS:
        difference = float(np.abs(results[backend] - results["expected"]).max())
        assert difference < 1e-4, (backend, difference)
