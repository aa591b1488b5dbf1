"""The tf_keras twin computes what the Keras 3 model computes (no tfmot needed here)."""

import keras
import numpy as np
import pytest

from asc_keras.models import VARIANTS, cp_resnet, ds_flexinet
from asc_keras.quantize.twin import build_twin


def randomise(model, seed=0):
    """Random weights, positive BN variances and lambdas: the twin must copy all of them."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        values = rng.normal(0, 0.3, weight.shape)
        if "variance" in weight.path:
            values = np.abs(values) + 0.5
        weight.assign(values.astype(np.float32))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("norm", ["residual", "batch", "none"])
def test_twin_equals_the_keras3_model(variant, norm):
    model = ds_flexinet(variant, norm=norm)
    randomise(model)
    x = np.random.default_rng(1).normal(size=(3, 256, 64, 1)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    # Both graphs of ResidualNorm: the int8 model's and the float TFLite model's.
    for int8_ops in (True, False) if norm == "residual" else (True,):
        twin = build_twin(model, int8_ops=int8_ops)
        np.testing.assert_allclose(twin.predict(x, verbose=0), expected, atol=1e-5, rtol=1e-5)


def test_twin_of_frequency_rn_per_channel_lambda_and_the_teacher():
    from asc_keras.layers import ResidualNorm

    x = np.random.default_rng(2).normal(size=(2, 256, 64, 1)).astype(np.float32)
    inputs = keras.Input((256, 64, 1))
    y = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    y = ResidualNorm(axis="frequency", per_channel_lambda=True)(y)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(y))
    for model in (keras.Model(inputs, outputs), cp_resnet(width=8)):
        randomise(model)
        for int8_ops in (True, False):
            np.testing.assert_allclose(
                build_twin(model, int8_ops=int8_ops).predict(x, verbose=0),
                model.predict(x, verbose=0),
                atol=1e-5,
                rtol=1e-5,
            )


def test_a_layer_without_a_twin_is_named():
    inputs = keras.Input((8, 4))
    model = keras.Model(inputs, keras.layers.GRU(2, name="my_gru")(inputs))
    with pytest.raises(ValueError, match="'my_gru' of type GRU has no tf_keras twin"):
        build_twin(model)
