"""DS-FlexiNet's convolutions for the JAX backend, in the operations XLA's CPU compiler runs fast.

Depthwise: XLA lowers `keras.ops.depthwise_conv` (a convolution with one group per channel)
and its gradients to generic grouped-convolution loops on CPU. Written as one multiply-add per
kernel tap over shifted views of the padded input, the forward pass and the input gradient
become fused elementwise loops; the kernel gradient (one reduction per tap) is taken over
chunks of the batch so that each chunk's shifted views stay in cache.

Pointwise (1x1): as a matrix product of the (positions, channels) matrix, whose kernel
gradient XLA computes without the transposed copy of the activations that its convolution
gradient makes.

Dense (the stem's 3x3): XLA's forward pass and input gradient, the kernel gradient as an
im2col matrix product over batch chunks (XLA's own first copies the activations transposed).

Same arguments, padding ("same", as Keras and TensorFlow define it) and results as
`keras.ops.depthwise_conv` / `keras.ops.conv` with channels-last inputs. Imported only under
the JAX backend (see `asc_keras.layers.fast_paths.backend_convolution`).
"""

import functools

import jax
import jax.numpy as jnp

from asc_keras.layers.padding import same_padding

# Batch chunk of the kernel gradients: 8 clips of the widest sm2 layer (64 x 16 x 48 floats)
# take 1.5 MB.
KERNEL_GRADIENT_CHUNK = 8


def _taps(x, kernel_shape, strides):
    """Pads x as "same" and yields (row, column, shifted strided view) per kernel tap."""
    kh, kw = kernel_shape
    oh, pad_h = same_padding(x.shape[1], strides[0], kh)
    ow, pad_w = same_padding(x.shape[2], strides[1], kw)
    padded = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    sh, sw = strides
    for i in range(kh):
        for j in range(kw):
            yield i, j, padded[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]


def _depthwise(x, kernel, strides):
    out = None
    for i, j, view in _taps(x, kernel.shape[:2], strides):
        term = view * kernel[i, j, :, 0]
        out = term if out is None else out + term
    return out


def _depthwise_kernel_gradient(x, g, kernel_shape, strides):
    """sum over (batch, rows, columns) of each tap's view times g: shape (taps, channels)."""
    return jnp.stack(
        [
            jnp.sum(view * g, axis=(0, 1, 2), dtype=jnp.float32)
            for _, _, view in _taps(x, kernel_shape, strides)
        ]
    )


def _conv_kernel_gradient(x, g, kernel_shape, strides):
    """The (taps x input channels, filters) kernel gradient as one product of the im2col
    matrix of x with g."""
    patches = jnp.concatenate([view for _, _, view in _taps(x, kernel_shape, strides)], axis=-1)
    return jnp.matmul(
        patches.reshape(-1, patches.shape[-1]).T,
        g.reshape(-1, g.shape[-1]),
        preferred_element_type=jnp.float32,
    )


def _sum_over_batch_chunks(function, x, g):
    """function(x, g) summed over chunks of the batch: the chunks' temporaries stay in cache."""
    batch = x.shape[0]
    chunks = batch // KERNEL_GRADIENT_CHUNK
    used = chunks * KERNEL_GRADIENT_CHUNK
    total = None
    if chunks:

        def chunk_sum(accumulated, chunk):
            return accumulated + function(*chunk), None

        xs = x[:used].reshape(chunks, KERNEL_GRADIENT_CHUNK, *x.shape[1:])
        gs = g[:used].reshape(chunks, KERNEL_GRADIENT_CHUNK, *g.shape[1:])
        initial = jax.eval_shape(function, xs[0], gs[0])
        total, _ = jax.lax.scan(chunk_sum, jnp.zeros(initial.shape, initial.dtype), (xs, gs))
    if used < batch:
        rest = function(x[used:], g[used:])
        total = rest if total is None else total + rest
    return total


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv2d(x, kernel, strides):
    """x: (batch, rows, columns, channels); kernel: (kh, kw, channels, 1); strides: a pair."""
    return _depthwise(x, kernel, strides)


def _depthwise_forward(x, kernel, strides):
    return _depthwise(x, kernel, strides), (x, kernel)


def _gradients(function, chunk_kernel_gradient, strides, x, kernel, g, input_gradient=None):
    """(input gradient, kernel gradient) of function(x, kernel, strides) for the cotangent g:
    the input gradient by autodiff unless given, the kernel gradient over batch chunks."""
    if input_gradient is None:
        _, input_vjp = jax.vjp(lambda inputs: function(inputs, kernel, strides), x)
        (input_gradient,) = input_vjp(g)
    kernel_gradient = _sum_over_batch_chunks(
        lambda xc, gc: chunk_kernel_gradient(xc, gc, kernel.shape[:2], strides), x, g
    )
    return input_gradient, kernel_gradient.reshape(kernel.shape).astype(kernel.dtype)


def _depthwise_backward(strides, residuals, g):
    x, kernel = residuals
    input_gradient = None
    if strides == (1, 1) and kernel.shape[0] % 2 and kernel.shape[1] % 2:
        # Symmetric padding: the input gradient is the same convolution of g with the kernel
        # turned by 180 degrees.
        input_gradient = _depthwise(g, kernel[::-1, ::-1], strides)
    return _gradients(_depthwise, _depthwise_kernel_gradient, strides, x, kernel, g, input_gradient)


depthwise_conv2d.defvjp(_depthwise_forward, _depthwise_backward)


def _convolution(x, kernel, strides):
    return jax.lax.conv_general_dilated(
        x, kernel, strides, "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x, kernel, strides):
    """A dense "same" convolution; x: (batch, rows, columns, channels); kernel: (kh, kw,
    channels, filters). XLA's own kernel gradient first copies x transposed to batch-minor."""
    return _convolution(x, kernel, strides)


def _conv_forward(x, kernel, strides):
    return _convolution(x, kernel, strides), (x, kernel)


def _conv_backward(strides, residuals, g):
    return _gradients(_convolution, _conv_kernel_gradient, strides, *residuals, g)


conv2d.defvjp(_conv_forward, _conv_backward)


def pointwise_conv2d(x, kernel):
    """A 1x1 convolution; x: (batch, rows, columns, channels); kernel: (1, 1, channels,
    filters)."""
    product = x.reshape(-1, x.shape[-1]) @ kernel[0, 0]
    return product.reshape(*x.shape[:-1], kernel.shape[-1])
