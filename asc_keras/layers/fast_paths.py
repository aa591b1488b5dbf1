"""Each backend's fastest formulation of DS-FlexiNet's convolution and batch norm layers.

The layers stay `keras.layers.Conv2D`, `DepthwiseConv2D` and `BatchNormalization` with their
own weights, so saved `.keras` files, the tf_keras twin and the int8 graph do not change; only
how a training step computes them does, to the same results:
- JAX: convolutions through `asc_keras.layers.jax_conv` (XLA's CPU grouped convolutions and
  convolution kernel gradients are slow).
- TensorFlow: batch norm in training through TensorFlow's fused kernel (Keras computes it as
  a dozen separate elementwise ops and reductions, forward and backward).
- PyTorch: convolutions and batch norm in training through `asc_keras.layers.torch_ops`
  (PyTorch's kernels on channels-last memory, no layout copies; fused batch norm).
"""

import contextlib

import keras

_enabled = True


@contextlib.contextmanager
def disabled():
    """Within this context every layer computes with its own ops (the reference the fast
    paths are tested against). Takes effect where a step is traced or run, not after."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def backend_convolution(layer):
    """A function (inputs, kernel) -> outputs computing the layer's convolution (no bias, no
    activation) faster than its own op on this backend, or None where its own op is fastest."""
    backend = keras.backend.backend()
    if not _enabled or backend == "tensorflow" or layer.data_format != "channels_last":
        return None
    if tuple(layer.dilation_rate) != (1, 1):
        return None
    strides = tuple(layer.strides)
    pointwise = tuple(layer.kernel_size) == (1, 1) and strides == (1, 1)
    if layer.padding != "same" and not pointwise:  # a 1x1 kernel pads nothing
        return None
    depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
    if depthwise and layer.depth_multiplier != 1:
        return None
    if not depthwise and (not isinstance(layer, keras.layers.Conv2D) or layer.groups != 1):
        return None
    if backend == "torch":
        from asc_keras.layers import torch_ops

        return lambda inputs, kernel: torch_ops.conv2d(inputs, kernel, strides, depthwise)
    from asc_keras.layers import jax_conv

    if depthwise:
        return lambda inputs, kernel: jax_conv.depthwise_conv2d(inputs, kernel, strides)
    if pointwise:
        return jax_conv.pointwise_conv2d
    return lambda inputs, kernel: jax_conv.conv2d(inputs, kernel, strides)


def apply_convolution(layer, inputs):
    """layer(inputs) for a convolution without bias or activation, through
    `backend_convolution` where the backend has a faster formulation."""
    convolution = backend_convolution(layer)
    if convolution is None or layer.use_bias or layer.activation is not keras.activations.linear:
        return layer(inputs)
    return convolution(inputs, keras.ops.cast(layer.kernel, inputs.dtype))


def use_backend_convolution(layer):
    """Makes a Conv2D layer compute its convolution through `backend_convolution` from now on
    (its bias and activation as before); the layer's config and weights are unchanged."""
    own = layer.convolution_op

    def convolution_op(inputs, kernel):
        convolution = backend_convolution(layer)
        if convolution is None:
            return own(inputs, kernel)
        return convolution(inputs, keras.ops.cast(kernel, inputs.dtype))

    layer.convolution_op = convolution_op
    return layer


def _tensorflow_batch_norm(x, gamma, beta, epsilon):
    import tensorflow as tf

    empty = tf.constant([], tf.float32)
    outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=x,
        scale=gamma,
        offset=beta,
        mean=empty,
        variance=empty,
        epsilon=epsilon,
        data_format="NHWC",
        is_training=True,
    )
    # The kernel's variance is Bessel-corrected; Keras' moving variance averages the biased one.
    count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
    return outputs, mean, variance * (count - 1.0) / count


def _fused_batch_norm(layer, inputs, training):
    """This backend's fused training-mode batch norm for the layer and inputs, or None."""
    backend = keras.backend.backend()
    if not (
        _enabled
        and backend in ("tensorflow", "torch")
        and training is True
        and layer.trainable
        and not layer.renorm
        and not getattr(layer, "synchronized", False)
        and layer.scale
        and layer.center
        and len(inputs.shape) == 4
        and layer.axis in (-1, 3)
        and keras.backend.standardize_dtype(inputs.dtype) == "float32"
    ):
        return None
    if backend == "torch":
        from asc_keras.layers import torch_ops

        return torch_ops.batch_norm
    return _tensorflow_batch_norm


def apply_batch_norm(layer, inputs, training=None):
    """layer(inputs, training=training) for a BatchNormalization layer, through the backend's
    fused kernel when training on TensorFlow or PyTorch (same statistics, same moving-average
    updates)."""
    batch_norm = _fused_batch_norm(layer, inputs, training)
    if batch_norm is None:
        return layer(inputs, training=training)
    outputs, mean, variance = batch_norm(inputs, layer.gamma, layer.beta, layer.epsilon)
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
    return outputs
