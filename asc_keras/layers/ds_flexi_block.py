import keras

from asc_keras.layers.fast_paths import apply_batch_norm, apply_convolution

# PyTorch's BatchNorm2d defaults (momentum 0.1 there is 0.9 here), as in the paper's code base.
BATCH_NORM_MOMENTUM = 0.9
BATCH_NORM_EPSILON = 1e-5


def batch_norm(name, dtype=None):
    return keras.layers.BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON, name=name, dtype=dtype
    )


@keras.saving.register_keras_serializable(package="asc_keras")
class DSFlexiBlock(keras.layers.Layer):
    """DS-FlexiNet block: a MobileNetV2 inverted residual with an adaptive shortcut.

    y = BN(PW_project(ReLU(BN(DW_3x3/stride(ReLU(BN(PW_expand(x)))))))) + shortcut(x)

    The shortcut adapts to the shape change, as the paper's residual connections "adapt based
    on channel and stride differences": identity when the block keeps channels and resolution;
    otherwise average pooling over the stride (when strided), then a 1x1 convolution and BN.
    Pooling before the 1x1 convolution keeps every input position in the shortcut (a strided
    1x1 convolution would drop three of four) at a quarter of the MACs. As in MobileNetV2, there
    is no activation after the addition (linear bottleneck).

    Args:
        filters: output channels.
        expansion: width of the hidden layer as a multiple of the input channels.
        strides: stride of the depthwise convolution, 1 or 2 (int or (freq, time) pair).
        kernel_size: depthwise kernel size.

    Example:
        >>> x = keras.random.normal((2, 64, 16, 16))
        >>> tuple(DSFlexiBlock(filters=32, expansion=3, strides=2)(x).shape)
        (2, 32, 8, 32)

    Reference: paper section II-A and Fig. 1; MobileNetV2 (Sandler et al. 2018).
    """

    def __init__(self, filters, expansion=4, strides=1, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
        if filters < 1 or expansion < 1 or any(s not in (1, 2) for s in strides):
            raise ValueError(
                f"DSFlexiBlock needs filters >= 1, expansion >= 1 and strides in (1, 2); "
                f"got filters={filters!r}, expansion={expansion!r}, strides={strides!r}"
            )
        self.filters = int(filters)
        self.expansion = int(expansion)
        self.strides = strides
        self.kernel_size = int(kernel_size)

    def build(self, input_shape):
        in_channels = input_shape[-1]
        hidden = in_channels * self.expansion
        policy = self.dtype_policy  # sublayers compute as the block does (mixed precision)
        self.residual_path = [
            keras.layers.Conv2D(hidden, 1, use_bias=False, name="expand", dtype=policy),
            batch_norm("expand_bn", policy),
            keras.layers.ReLU(name="expand_relu", dtype=policy),
            keras.layers.DepthwiseConv2D(
                self.kernel_size,
                strides=self.strides,
                padding="same",
                use_bias=False,
                name="depthwise",
                dtype=policy,
            ),
            batch_norm("depthwise_bn", policy),
            keras.layers.ReLU(name="depthwise_relu", dtype=policy),
            keras.layers.Conv2D(self.filters, 1, use_bias=False, name="project", dtype=policy),
            batch_norm("project_bn", policy),
        ]
        self.shortcut_path = []
        if self.strides != (1, 1):
            pool = keras.layers.AveragePooling2D(
                self.strides, padding="same", name="shortcut_pool", dtype=policy
            )
            self.shortcut_path.append(pool)
        if self.strides != (1, 1) or in_channels != self.filters:
            self.shortcut_path += [
                keras.layers.Conv2D(
                    self.filters, 1, use_bias=False, name="shortcut_conv", dtype=policy
                ),
                batch_norm("shortcut_bn", policy),
            ]
        for path in (self.residual_path, self.shortcut_path):
            shape = input_shape
            for layer in path:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)

    def sequential_paths(self):
        """The two branches whose outputs are added, each a list of layers applied in order."""
        return [self.residual_path, self.shortcut_path]

    def call(self, inputs, training=None):
        branches = []
        for path in self.sequential_paths():
            x = inputs
            for layer in path:
                if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
                    x = apply_convolution(layer, x)
                elif isinstance(layer, keras.layers.BatchNormalization):
                    x = apply_batch_norm(layer, x, training)
                else:
                    x = layer(x)
            branches.append(x)
        return branches[0] + branches[1]

    def compute_output_shape(self, input_shape):
        batch, freq, time, _ = input_shape
        out = [None if d is None else -(-d // s) for d, s in zip((freq, time), self.strides)]
        return (batch, out[0], out[1], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "expansion": self.expansion,
            "strides": self.strides,
            "kernel_size": self.kernel_size,
        }
