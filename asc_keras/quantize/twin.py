"""Keras 3 model -> tf_keras (Keras 2) twin of standard layers with the same weights.

tfmot's quantization-aware training accepts only tf_keras models. The twin rebuilds a
DS-FlexiNet layer by layer: each `DSFlexiBlock` is unrolled into its convolutions, BN, ReLU,
pooling and an `Add`, and `ResidualNorm` becomes `TwinResidualNorm` (the same formula in plain
TensorFlow ops: AVERAGE_POOL_2D (or MEAN) for the mean, ADD for x - mean, TRANSPOSE,
BATCH_MATMUL and MUL for the variance, RSQRT, RESIZE_NEAREST_NEIGHBOR, MUL and ADD for the
output, all of which TFLite Micro runs in int8; `float_tflite` converts the formula's own graph
instead). Only this package imports tf_keras.
"""

import keras
import numpy as np
import tensorflow as tf
import tf_keras

from asc_keras.layers.residual_norm import REDUCTION_AXES


def mean_over(tensor, axes, name):
    """The mean over `axes`, dimensions kept. Over (frequency, time) it is written as a global
    average pool: an int8 AVERAGE_POOL_2D runs with CMSIS-NN on a Cortex-M, where TFLite Micro
    has only the reference kernel for MEAN (about ten times the instructions; tools/mcu.py)."""
    if tuple(axes) != (1, 2):
        return tf.reduce_mean(tensor, axes, keepdims=True, name=name)
    window = (tensor.shape[1], tensor.shape[2])
    if None in window:
        raise ValueError(f"{name}: the twin needs the frequency and time sizes, got {window}")
    return tf.nn.avg_pool2d(tensor, window, window, "VALID", name=name)


def spread(vector, like):
    """A per-channel `vector` (batch, 1, 1, channels) as a map of `like`'s shape: a
    nearest-neighbour resize, which an int8 model runs as copies of the vector. Any other
    shape is left to the op's own broadcasting."""
    if tuple(vector.shape[1:3]) != (1, 1) or None in like.shape[1:3]:
        return vector
    return tf.image.resize(vector, like.shape[1:3], method="nearest", name="spread")


def sum_of_squares(tensor, axes):
    """The sum of the squares of `tensor` over `axes`, dimensions kept, as one int8 matrix
    product per sample and statistic (BATCH_MATMUL of the values with themselves, after a
    TRANSPOSE that puts the summed axes last): its int32 sums are exact, and only the result
    is rounded, to a range of its own, where squares rounded to int8 and then averaged (MUL,
    MEAN) lose the small values. CMSIS-NN runs TRANSPOSE and BATCH_MATMUL on a Cortex-M, where
    MEAN has only TFLite Micro's reference kernel."""
    _, height, width, channels = tensor.shape
    if tuple(axes) == (1, 2):
        rows, length = channels, height * width
        tensor = tf.transpose(tensor, (0, 3, 1, 2), name="rows_of_squares")
        kept = (1, 1, channels)
    else:
        rows, length = height, width * channels
        kept = (height, 1, 1)
    rows = tf.reshape(tensor, (-1, rows, 1, length))
    sums = tf.matmul(rows, rows, transpose_b=True, name="sum_of_squares")
    return tf.reshape(sums, (-1, *kept))


class TwinResidualNorm(tf_keras.layers.Layer):
    """tf_keras ResidualNorm: lambda * x + (x - mean) * rsqrt(var + epsilon).

    `int8_ops` (the default) computes it in the ops below, which a Cortex-M runs in
    CMSIS-NN; without it, as the formula reads (MEAN, SUB, MUL, RSQRT, ADD with broadcast
    vectors), which LiteRT's XNNPACK delegate runs in float in one piece."""

    def __init__(
        self, axis="channel", epsilon=1e-5, per_channel_lambda=False, int8_ops=True, **kwargs
    ):
        super().__init__(**kwargs)
        self.axis, self.epsilon, self.per_channel_lambda = axis, epsilon, per_channel_lambda
        self.int8_ops = int8_ops

    def build(self, input_shape):
        shape = (input_shape[-1],) if self.per_channel_lambda else ()
        self.residual_lambda = self.add_weight("residual_lambda", shape=shape, initializer="zeros")

    # The tensors between the ops, each of which an int8 TFLite model stores in int8 with a
    # range of its own; each is also the name of the op that computes it. The mean over
    # (frequency, time) is an average pool, which keeps its input's scale: no range of its
    # own.
    INNER = (
        "mean",
        "negated_mean",
        "centered",
        "sum_of_squares",
        "variance",
        "rsqrt",
        "gain",
        "shift",
        "normalized",
    )
    POOLED = ("mean",)

    @property
    def inner_tensors(self):
        pooled = REDUCTION_AXES[self.axis] == (1, 2)
        return tuple(name for name in self.INNER if not (pooled and name in self.POOLED))

    def call(self, inputs, training=None):
        """lambda * x + (x - mean) * r as (x - mean) * (r + lambda) + lambda * mean, with
        r = rsqrt(var + epsilon): every op on the whole map then takes two maps of its shape
        (ADD, MUL), which CMSIS-NN runs on a Cortex-M, where a per-channel operand
        broadcast over the map, or any SUB, takes TFLite Micro's reference kernels
        (docs/mcu.md). The per-channel vectors are spread over the map by a nearest-neighbour
        resize, which copies them."""

        def inner(name, tensor):
            return self.quantize_inner(name, tensor, training)

        def average(name, tensor):
            reduced = mean_over(tensor, axes, name=name)
            return inner(name, reduced) if name in self.inner_tensors else reduced

        axes = REDUCTION_AXES[self.axis]
        if not self.int8_ops:
            centered = inputs - mean_over(inputs, axes, name="mean")
            variance = tf.reduce_mean(centered * centered, axes, keepdims=True)
            normalized = centered * tf.math.rsqrt(variance + self.epsilon)
            return self.residual_lambda * inputs + normalized
        mean = average("mean", inputs)
        negated_mean = inner("negated_mean", tf.subtract(0.0, mean, name="negated_mean"))
        centered = inner("centered", tf.add(inputs, spread(negated_mean, inputs), "centered"))
        squares = inner("sum_of_squares", sum_of_squares(centered, axes))
        count = np.prod([inputs.shape[axis] for axis in axes])
        variance = inner("variance", tf.multiply(squares, 1.0 / count, name="variance"))
        # (No quantizer on variance + epsilon: the converter gives that ADD the variance's range,
        # and a fake quantizer there crashes it.)
        scale = inner("rsqrt", tf.math.rsqrt(variance + self.epsilon, name="rsqrt"))
        gain = inner("gain", tf.add(scale, self.residual_lambda, name="gain"))
        shift = inner("shift", tf.multiply(mean, self.residual_lambda, name="shift"))
        normalized = inner("normalized", tf.multiply(centered, spread(gain, inputs), "normalized"))
        return normalized + spread(shift, inputs)

    def quantize_inner(self, name, tensor, training):
        """Identity here; the QAT layer fake-quantises each of `inner_tensors`."""
        return tensor

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            "per_channel_lambda": self.per_channel_lambda,
            "int8_ops": self.int8_ops,
        }


def _twin_layer(layer, name, int8_ops=True):
    """A tf_keras layer equal to the Keras 3 `layer` (weights copied by the caller)."""
    kind = type(layer).__name__
    config = layer.get_config()
    L = tf_keras.layers
    if kind == "ResidualNorm":
        return TwinResidualNorm(
            config["axis"], config["epsilon"], config["per_channel_lambda"], int8_ops, name=name
        )
    if kind == "Conv2D":
        if config.get("groups", 1) != 1 or config["activation"] != "linear":
            raise ValueError(f"layer {layer.name!r}: grouped or activated Conv2D has no twin")
        return L.Conv2D(
            config["filters"],
            config["kernel_size"],
            strides=config["strides"],
            padding=config["padding"],
            use_bias=config["use_bias"],
            name=name,
        )
    if kind == "DepthwiseConv2D":
        return L.DepthwiseConv2D(
            config["kernel_size"],
            strides=config["strides"],
            padding=config["padding"],
            use_bias=config["use_bias"],
            depth_multiplier=config["depth_multiplier"],
            name=name,
        )
    if kind == "BatchNormalization":
        return L.BatchNormalization(
            momentum=config["momentum"],
            epsilon=config["epsilon"],
            center=config["center"],
            scale=config["scale"],
            name=name,
        )
    if kind == "ReLU":
        return L.ReLU(name=name)
    if kind == "AveragePooling2D":
        return L.AveragePooling2D(
            config["pool_size"], strides=config["strides"], padding=config["padding"], name=name
        )
    if kind == "MaxPooling2D":
        return L.MaxPooling2D(
            config["pool_size"], strides=config["strides"], padding=config["padding"], name=name
        )
    if kind == "GlobalAveragePooling2D":
        return L.GlobalAveragePooling2D(name=name)
    if kind == "Add":
        return L.Add(name=name)
    if kind == "Dense":
        if config["activation"] != "linear" or len(layer.input.shape) != 2:
            raise ValueError(f"layer {layer.name!r}: only a linear Dense on vectors has a twin")
        return L.Conv2D(config["units"], 1, use_bias=config["use_bias"], name=name)
    raise ValueError(
        f"layer {layer.name!r} of type {kind} has no tf_keras twin; the quantization path "
        f"takes DS-FlexiNet and CP-ResNet models"
    )


def _dense_as_convolution(layer, name, pairs):
    """A Dense head as Reshape -> 1x1 Conv2D -> Reshape: the same function, converted to
    CONV_2D instead of FULLY_CONNECTED. TFLite Micro's int8 FULLY_CONNECTED kernel rounds
    differently from LiteRT's reference kernel (one LSB off on some outputs), while their
    CONV_2D kernels agree bit for bit."""
    conv = _twin_layer(layer, name)
    pairs.append((conv, layer))
    units, width = layer.get_config()["units"], layer.input.shape[-1]

    def apply(x):
        x = tf_keras.layers.Reshape((1, 1, width), name=f"{name}_to_map")(x)
        return tf_keras.layers.Reshape((units,), name=f"{name}_to_vector")(conv(x))

    return apply


def _global_pool_as_average_pool(layer, name):
    """GlobalAveragePooling2D as an AveragePooling2D over the whole map and a Reshape: the same
    function, converted to AVERAGE_POOL_2D (CMSIS-NN on a Cortex-M) instead of MEAN."""
    _, height, width, channels = layer.input.shape
    if layer.get_config().get("keepdims") or not (height and width):
        return tf_keras.layers.GlobalAveragePooling2D(
            keepdims=bool(layer.get_config().get("keepdims")), name=name
        )
    pool = tf_keras.layers.AveragePooling2D((height, width), name=name)

    def apply(x):
        return tf_keras.layers.Reshape((channels,), name=f"{name}_to_vector")(pool(x))

    return apply


def float_tflite(model):
    """The float TFLite model of the Keras 3 `model`: its twin with ResidualNorm as the formula
    reads, which LiteRT's XNNPACK delegate runs in one piece (it runs no int8
    RESIZE_NEAREST_NEIGHBOR or BATCH_MATMUL, and the float model needs neither)."""
    from asc_keras.quantize.convert import convert

    return convert(build_twin(model, int8_ops=False), int8=False)


def build_twin(model, int8_ops=True):
    """The tf_keras functional twin of a Keras 3 functional `model`, weights copied; with
    `int8_ops` False its ResidualNorms take the float graph (`TwinResidualNorm`)."""
    pairs = []

    def make(layer, name):
        if isinstance(layer, keras.layers.Dense):
            return _dense_as_convolution(layer, name, pairs)
        if isinstance(layer, keras.layers.GlobalAveragePooling2D):
            return _global_pool_as_average_pool(layer, name)
        twin = _twin_layer(layer, name, int8_ops)
        pairs.append((twin, layer))
        return twin

    tensors = {}
    inputs = tf_keras.Input(model.input_shape[1:], name=model.layers[0].name)
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            tensors[id(layer.output)] = inputs
            continue
        sources = layer.input if isinstance(layer.input, list) else [layer.input]
        args = [tensors[id(t)] for t in sources]
        x = args if len(args) > 1 else args[0]
        if hasattr(layer, "sequential_paths"):
            branches = []
            for path in layer.sequential_paths():
                y = x
                for sub in path:
                    y = make(sub, f"{layer.name}_{sub.name}")(y)
                branches.append(y)
            out = tf_keras.layers.Add(name=f"{layer.name}_add")(branches)
        else:
            out = make(layer, layer.name)(x)
        tensors[id(layer.output)] = out
    twin = tf_keras.Model(inputs, tensors[id(model.output)], name=f"{model.name}_twin")
    for twin_layer, layer in pairs:
        weights = [np.asarray(w) for w in layer.get_weights()]
        if isinstance(layer, keras.layers.Dense):
            weights[0] = weights[0].reshape(1, 1, *weights[0].shape)
        twin_layer.set_weights(weights)
    return twin
