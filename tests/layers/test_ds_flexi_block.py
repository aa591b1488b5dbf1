import keras
import numpy as np
import pytest

from asc_keras.layers import DSFlexiBlock
from tests.helpers import run_layer_test

pytestmark = pytest.mark.multi_backend


@pytest.mark.parametrize(
    "kwargs, input_shape, output_shape, weights",
    [  # weights: 3 convs + 3 BNs (+ 1 conv + 1 BN in a projection shortcut)
        ({"filters": 8, "expansion": 3, "strides": (1, 1)}, (2, 16, 8, 8), (2, 16, 8, 8), (9, 6)),
        ({"filters": 12, "expansion": 2, "strides": (2, 2)}, (2, 16, 8, 8), (2, 8, 4, 12), (12, 8)),
        ({"filters": 6, "expansion": 4, "strides": (1, 1)}, (2, 9, 5, 4), (2, 9, 5, 6), (12, 8)),
        ({"filters": 4, "expansion": 2, "strides": (2, 2)}, (2, 9, 5, 4), (2, 5, 3, 4), (12, 8)),
    ],
)
def test_layer_contract(kwargs, input_shape, output_shape, weights, tmp_path):
    run_layer_test(DSFlexiBlock, kwargs, input_shape, output_shape, tmp_path, weights)


def test_identity_shortcut_when_shape_is_kept():
    x = np.random.default_rng(0).normal(size=(2, 8, 4, 6)).astype("float32")
    block = DSFlexiBlock(6, expansion=2)
    y = keras.ops.convert_to_numpy(block(x, training=False))
    assert block.shortcut_path == []
    residual = x
    for layer in block.residual_path:
        residual = layer(residual, training=False) if "bn" in layer.name else layer(residual)
    np.testing.assert_allclose(y, keras.ops.convert_to_numpy(residual) + x, atol=1e-5)


def test_projection_shortcut_pools_then_projects():
    block = DSFlexiBlock(8, expansion=2, strides=2)
    block(np.zeros((1, 8, 8, 4), "float32"))
    kinds = [type(layer).__name__ for layer in block.shortcut_path]
    assert kinds == ["AveragePooling2D", "Conv2D", "BatchNormalization"]


def test_parameter_count_by_hand():
    # cin 4, expansion 3 -> hidden 12, filters 8, stride 2:
    # expand 4*12 + BN 24 | depthwise 9*12 + BN 24 | project 12*8 + BN 16 | shortcut 4*8 + BN 16.
    block = DSFlexiBlock(8, expansion=3, strides=2)
    block(np.zeros((1, 8, 8, 4), "float32"))
    trainable = sum(int(np.prod(w.shape)) for w in block.trainable_weights)
    assert trainable == 48 + 24 + 108 + 24 + 96 + 16 + 32 + 16


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="strides=\\(3, 3\\)"):
        DSFlexiBlock(8, strides=3)


def test_training_reaches_the_batch_norms_and_mixed_precision_reaches_every_sublayer():
    x = np.random.default_rng(0).normal(3.0, 2.0, (4, 8, 8, 6)).astype("float32")
    block = DSFlexiBlock(filters=12, expansion=2, strides=2)
    block(x, training=False)
    bn = block.residual_path[1]
    before = keras.ops.convert_to_numpy(bn.moving_mean)
    block(x, training=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn.moving_mean), before)
    block(x, training=True)
    assert not np.allclose(keras.ops.convert_to_numpy(bn.moving_mean), before)

    mixed = DSFlexiBlock(filters=12, expansion=2, strides=2, dtype="mixed_float16")
    y = mixed(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    for layer in mixed.residual_path + mixed.shortcut_path:
        assert layer.dtype_policy.name == "mixed_float16", layer.name
        assert all(w.dtype == "float32" for w in layer.weights), layer.name  # variables stay
