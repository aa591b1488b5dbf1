"""Helpers of the tests: the checks every asc_keras layer must pass (in the spirit of
KerasHub's `run_layer_test`), and running tools/train.py as a user would."""

import os
import sys
import time
from pathlib import Path

import keras
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_layer_test(layer_cls, init_kwargs, input_shape, expected_output_shape, tmp_path):
    """Build, call, config round trip, `.keras` round trip and one training step of a layer."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=input_shape).astype("float32")

    layer = layer_cls(**init_kwargs)
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.shape == tuple(expected_output_shape)
    assert tuple(layer.compute_output_shape(input_shape)) == tuple(expected_output_shape)
    assert np.all(np.isfinite(y))

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


def train_command(config, out, *flags):
    """tools/train.py CONFIG --out OUT --quiet FLAGS, and its environment."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    command = [sys.executable, str(ROOT / "tools" / "train.py"), str(config), "--out", str(out)]
    return [*command, "--quiet", *flags], env


def wait_for(path, process, timeout=600):
    """Waits until `path` exists (True) or `process` ends or time runs out (False)."""
    deadline = time.time() + timeout
    while not path.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    return path.exists()
