"""The same weights give the same logits on the TensorFlow, JAX and PyTorch backends."""

import os
import subprocess
import sys

import numpy as np
import pytest

PREDICT = """
import sys, numpy as np, keras
from asc_keras import ds_flexinet
model = ds_flexinet(sys.argv[1], norm=sys.argv[2])
model.load_weights(sys.argv[3])
np.save(sys.argv[5], model.predict(np.load(sys.argv[4]), verbose=0))
"""


def logits_on(backend, variant, norm, weights, inputs, out):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [variant, norm, str(weights), str(inputs), str(out)]
    subprocess.run([sys.executable, "-c", PREDICT, *args], env=env, check=True, capture_output=True)
    return np.load(out)


@pytest.mark.parametrize("variant, norm", [("sm2", "residual"), ("sm1", "batch")])
def test_same_weights_same_logits_on_every_backend(variant, norm, tmp_path):
    import keras

    from asc_keras import ds_flexinet

    rng = np.random.default_rng(0)
    model = ds_flexinet(variant, norm=norm)
    # Random BN statistics and lambdas, so inference-mode normalisation is really compared.
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype("float32") for w in model.weights])
    for layer in model.layers:
        for w in layer.weights:
            if "variance" in w.path:
                w.assign(np.abs(keras.ops.convert_to_numpy(w)) + 0.5)
    weights = tmp_path / "model.weights.h5"
    model.save_weights(weights)
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, rng.normal(size=(4, 256, 64, 1)).astype("float32"))

    results = {
        b: logits_on(b, variant, norm, weights, inputs, tmp_path / f"{b}.npy")
        for b in ("tensorflow", "jax", "torch")
    }
    assert np.abs(results["tensorflow"]).max() > 1e-2, "degenerate logits prove nothing"
    for backend in ("jax", "torch"):
        np.testing.assert_allclose(results[backend], results["tensorflow"], atol=1e-4, rtol=1e-4)
