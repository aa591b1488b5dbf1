import keras
import numpy as np
import pytest

from asc_keras.layers import ResidualNorm
from tests.helpers import run_layer_test

pytestmark = pytest.mark.multi_backend

AXES = {"channel": (1, 2), "frequency": (2, 3)}


def numpy_instance_norm(x, axes, epsilon):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon)


@pytest.mark.parametrize("axis", ["channel", "frequency"])
def test_layer_contract(axis, tmp_path):
    kwargs = {"axis": axis, "epsilon": 1e-5}
    run_layer_test(ResidualNorm, kwargs, (3, 16, 8, 4), (3, 16, 8, 4), tmp_path, (1, 0))


@pytest.mark.parametrize("axis", ["channel", "frequency"])
def test_lambda_zero_is_instance_norm(axis):
    x = np.random.default_rng(1).normal(2.0, 3.0, size=(2, 12, 6, 5)).astype("float32")
    layer = ResidualNorm(axis=axis, lambda_init=0.0, epsilon=1e-3)
    expected = numpy_instance_norm(x.astype("float64"), AXES[axis], 1e-3)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-5)


def test_output_is_lambda_x_plus_instance_norm_with_per_channel_lambda():
    x = np.random.default_rng(2).normal(size=(2, 10, 7, 3)).astype("float32")
    layer = ResidualNorm(per_channel_lambda=True)
    layer.build(x.shape)
    lambdas = np.array([0.0, 0.5, 2.0], dtype="float32")
    layer.residual_lambda.assign(lambdas)
    expected = lambdas * x + numpy_instance_norm(x.astype("float64"), (1, 2), 1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-5)


def test_gradient_reaches_lambda():
    # loss = mean over the batch of sum(w * RN(x)); d loss / d lambda = mean_b sum(w_b * x_b).
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 8, 6, 2)).astype("float32")
    w = rng.normal(size=x.shape).astype("float32")
    inputs = keras.Input(x.shape[1:])
    layer = ResidualNorm(lambda_init=0.3)
    model = keras.Model(inputs, layer(inputs))
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01),
        loss=lambda y_true, y_pred: keras.ops.sum(y_true * y_pred, axis=(1, 2, 3)),
    )
    model.fit(x, w, batch_size=4, epochs=1, verbose=0, shuffle=False)
    expected_gradient = float(np.mean(np.sum(w * x, axis=(1, 2, 3))))
    new_lambda = float(keras.ops.convert_to_numpy(layer.residual_lambda))
    np.testing.assert_allclose(new_lambda, 0.3 - 0.01 * expected_gradient, rtol=1e-4)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="'time'"):
        ResidualNorm(axis="time")
    with pytest.raises(ValueError, match="batch, frequency, time, channels"):
        ResidualNorm()(np.zeros((2, 3, 4), "float32"))
