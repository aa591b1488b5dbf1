"""DS-FlexiNet's convolutions and batch norm for the PyTorch backend, without layout copies.

Keras' PyTorch backend copies every channels-last activation to channels-first before a
convolution and back after it, and computes batch norm as separate elementwise ops and
reductions. A channels-last tensor seen through `permute(0, 3, 1, 2)` is a channels-first
tensor in PyTorch's `channels_last` memory format, which its convolution and batch norm
kernels take as it is: no copies, one fused batch norm forward and backward.
Imported only under the PyTorch backend (see `asc_keras.layers.fast_paths`).
"""

import torch
import torch.nn.functional as F

from asc_keras.layers.padding import same_padding


def _channels_first(x):
    return x.permute(0, 3, 1, 2)


def _channels_last(x):
    return x.permute(0, 2, 3, 1)


def conv2d(x, kernel, strides, depthwise=False):
    """A "same" convolution of channels-last x with a Keras kernel: (kh, kw, channels,
    filters), or (kh, kw, channels, 1) for a depthwise one."""
    kh, kw = kernel.shape[:2]
    _, pad_h = same_padding(x.shape[1], strides[0], kh)
    _, pad_w = same_padding(x.shape[2], strides[1], kw)
    if pad_h[0] == pad_h[1] and pad_w[0] == pad_w[1]:
        padding = (pad_h[0], pad_w[0])
    else:  # PyTorch pads both sides alike: pad channels-last x first
        x = F.pad(x, (0, 0, *pad_w, *pad_h))
        padding = 0
    if depthwise:
        weight, groups = kernel.permute(2, 3, 0, 1), x.shape[-1]
    else:
        weight, groups = kernel.permute(3, 2, 0, 1), 1
    outputs = F.conv2d(_channels_first(x), weight, stride=strides, padding=padding, groups=groups)
    return _channels_last(outputs)


def batch_norm(x, gamma, beta, epsilon):
    """Training-mode batch norm of channels-last x: (outputs, batch mean, biased batch
    variance)."""
    outputs, mean, inverse_std = torch.ops.aten.native_batch_norm(
        _channels_first(x), gamma, beta, None, None, True, 0.0, epsilon
    )
    variance = inverse_std.detach().pow(-2) - epsilon
    return _channels_last(outputs), mean.detach(), variance
