"""Keras' (and TensorFlow's) "same" padding."""


def same_padding(size, stride, kernel):
    """Output size and (before, after) padding of one axis under "same" padding."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, (total // 2, total - total // 2)
