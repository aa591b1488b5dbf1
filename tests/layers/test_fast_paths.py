"""Each backend's fast path (asc_keras.layers.fast_paths) computes what the layers' own ops
compute: outputs, gradients of every weight and the batch norms' moving statistics, for a
block and for the whole model, on every backend; and it changes nothing that is saved."""

import keras
import numpy as np
import pytest

from asc_keras import ds_flexinet
from asc_keras.layers import DSFlexiBlock, fast_paths

pytestmark = pytest.mark.multi_backend

# float32 sums over a batch in another order: outputs and moving statistics to 1e-5,
# gradients to 1e-5 of the largest gradient of the model (a gradient that is a near-zero
# sum of large terms, as a batch norm's scale before another batch norm, has no relative
# precision of its own).
TOLERANCE = 1e-5


def training_step(model, x, y):
    """Loss, outputs, gradient of every trainable weight and the non-trainable weights after
    one forward and backward pass in training mode, with this backend's autodiff."""
    backend = keras.backend.backend()
    y = keras.ops.convert_to_tensor(y)

    def loss_of(outputs):
        return keras.ops.mean(keras.ops.square(outputs - y))

    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            loss = loss_of(outputs)
        gradients = tape.gradient(loss, model.trainable_variables)
    elif backend == "jax":
        import jax

        def stateless_loss(trainable, non_trainable):
            outputs, updated = model.stateless_call(trainable, non_trainable, x, training=True)
            return loss_of(outputs), (outputs, updated)

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        step = jax.jit(jax.value_and_grad(stateless_loss, has_aux=True))
        (loss, (outputs, updated)), gradients = step(trainable, non_trainable)
        for variable, value in zip(model.non_trainable_variables, updated):
            variable.assign(value)
    else:
        for variable in model.trainable_variables:
            variable.value.grad = None
        outputs = model(x, training=True)
        loss = loss_of(outputs)
        loss.backward()
        gradients = [variable.value.grad for variable in model.trainable_variables]

    def numpy(value):
        return keras.ops.convert_to_numpy(keras.ops.stop_gradient(value))

    return {
        "loss": float(numpy(loss)),
        "outputs": numpy(outputs),
        "gradients": [numpy(g) for g in gradients],
        "statistics": [numpy(v) for v in model.non_trainable_variables],
    }


def assert_same_step(fast, reference):
    np.testing.assert_allclose(fast["loss"], reference["loss"], rtol=TOLERANCE)
    np.testing.assert_allclose(fast["outputs"], reference["outputs"], atol=TOLERANCE)
    for got, expected in zip(fast["statistics"], reference["statistics"]):
        np.testing.assert_allclose(got, expected, atol=TOLERANCE)
    assert len(fast["gradients"]) == len(reference["gradients"])
    scale = max(float(np.abs(g).max()) for g in reference["gradients"])
    for got, expected in zip(fast["gradients"], reference["gradients"]):
        np.testing.assert_allclose(got / scale, expected / scale, atol=TOLERANCE)


def twin_steps(build, x, y):
    """The step of a model built by `build` with the fast paths, and of a second one with the
    same weights computing with the layers' own ops."""
    fast_model = build()
    fast_model(x)
    reference_model = build()
    reference_model(x)
    reference_model.set_weights(fast_model.get_weights())
    fast = training_step(fast_model, x, y)
    with fast_paths.disabled():
        reference = training_step(reference_model, x, y)
    return fast, reference, fast_model, reference_model


@pytest.mark.parametrize(
    "kwargs, input_shape",
    [
        ({"filters": 8, "expansion": 3, "strides": 1}, (5, 16, 8, 8)),  # identity shortcut
        ({"filters": 12, "expansion": 2, "strides": 2}, (5, 16, 8, 8)),  # pooled projection
        ({"filters": 6, "expansion": 2, "strides": (2, 1)}, (3, 9, 5, 4)),  # odd sizes
    ],
)
def test_block_step_equals_its_layers_own_ops(kwargs, input_shape):
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, input_shape).astype("float32")
    block = DSFlexiBlock(**kwargs)
    y = rng.normal(size=block.compute_output_shape(input_shape)).astype("float32")

    def build():
        inputs = keras.Input(input_shape[1:])
        return keras.Model(inputs, DSFlexiBlock(**kwargs)(inputs))

    fast, reference, fast_model, reference_model = twin_steps(build, x, y)
    assert_same_step(fast, reference)
    # Inference (moving statistics) after the step, too.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fast_model(x, training=False)),
        keras.ops.convert_to_numpy(reference_model(x, training=False)),
        atol=TOLERANCE,
    )


def test_model_step_equals_its_layers_own_ops():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 64, 32, 1)).astype("float32")
    y = rng.normal(size=(9, 10)).astype("float32")
    fast, reference, _, _ = twin_steps(lambda: ds_flexinet("sm1", input_shape=(64, 32, 1)), x, y)
    assert_same_step(fast, reference)


def test_fast_paths_change_nothing_saved(tmp_path):
    model = ds_flexinet("sm1", input_shape=(64, 32, 1))
    with fast_paths.disabled():
        reference = ds_flexinet("sm1", input_shape=(64, 32, 1))
    assert model.to_json() == reference.to_json()
    model.save(tmp_path / "fast.keras")
    loaded = keras.saving.load_model(tmp_path / "fast.keras")
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    x = np.random.default_rng(2).normal(size=(3, 64, 32, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.backends("jax")
@pytest.mark.parametrize(
    "shape, strides, kernel_size",
    [
        ((13, 64, 16, 12), (1, 1), 3),
        ((13, 63, 15, 12), (2, 2), 3),
        ((9, 10, 7, 5), (1, 1), 5),
        ((9, 10, 7, 5), (1, 2), 4),
    ],
)
def test_jax_convolutions_equal_keras_ops(shape, strides, kernel_size):
    import jax

    from asc_keras.layers import jax_conv

    rng = np.random.default_rng(3)
    x = rng.normal(size=shape).astype("float32")
    cases = [
        (
            lambda x, k: jax_conv.depthwise_conv2d(x, k, strides),
            lambda x, k: keras.ops.depthwise_conv(x, k, strides=strides, padding="same"),
            (kernel_size, kernel_size, shape[-1], 1),
        ),
        (
            lambda x, k: jax_conv.conv2d(x, k, strides),
            lambda x, k: keras.ops.conv(x, k, strides=strides, padding="same"),
            (kernel_size, kernel_size, shape[-1], 7),
        ),
        (
            jax_conv.pointwise_conv2d,
            lambda x, k: keras.ops.conv(x, k, padding="same"),
            (1, 1, shape[-1], 7),
        ),
    ]
    for fast, reference, kernel_shape in cases:
        kernel = rng.normal(size=kernel_shape).astype("float32")
        expected, reference_vjp = jax.vjp(reference, x, kernel)
        got, fast_vjp = jax.vjp(fast, x, kernel)
        np.testing.assert_allclose(got, expected, atol=TOLERANCE)
        cotangent = rng.normal(size=expected.shape).astype("float32")
        for g, e in zip(fast_vjp(cotangent), reference_vjp(cotangent)):
            scale = float(np.abs(e).max())
            np.testing.assert_allclose(g / scale, e / scale, atol=TOLERANCE)
