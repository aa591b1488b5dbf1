import keras
from keras import ops

REDUCTION_AXES = {
    # Statistics per sample and channel over (frequency, time): the paper's RN (eq. 1-2).
    "channel": (1, 2),
    # Statistics per sample and frequency bin over (time, channel): the QTI / TF-SepNet variant.
    "frequency": (2, 3),
}


@keras.saving.register_keras_serializable(package="asc_keras")
class ResidualNorm(keras.layers.Layer):
    """Residual Normalization: instance normalisation plus a trainable share of the input.

    RN(x) = lambda * x + (x - mean(x)) / sqrt(var(x) + epsilon), where mean and (biased)
    variance are taken per sample over the axes that `axis` names, for inputs laid out as
    (batch, frequency, time, channels).

    Args:
        axis: "channel" (the paper: statistics over frequency and time for each channel) or
            "frequency" (statistics over time and channels for each frequency bin).
        epsilon: added to the variance.
        per_channel_lambda: one lambda per channel instead of one scalar.
        lambda_init: initial value of lambda.

    Example:
        >>> x = keras.random.normal((2, 64, 16, 8))
        >>> tuple(ResidualNorm(axis="channel")(x).shape)
        (2, 64, 16, 8)

    Reference: paper section II-B, equations (1) and (2).
    """

    def __init__(
        self,
        axis="channel",
        epsilon=1e-5,
        per_channel_lambda=False,
        lambda_init=0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if axis not in REDUCTION_AXES:
            raise ValueError(f"ResidualNorm axis={axis!r} is not one of {sorted(REDUCTION_AXES)}")
        if epsilon <= 0:
            raise ValueError(f"ResidualNorm epsilon must be > 0, got {epsilon!r}")
        self.axis = axis
        self.epsilon = float(epsilon)
        self.per_channel_lambda = bool(per_channel_lambda)
        self.lambda_init = float(lambda_init)
        self.reduction_axes = REDUCTION_AXES[axis]

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"ResidualNorm expects (batch, frequency, time, channels) inputs, "
                f"got shape {tuple(input_shape)}"
            )
        shape = (input_shape[-1],) if self.per_channel_lambda else ()
        self.residual_lambda = self.add_weight(
            name="residual_lambda",
            shape=shape,
            initializer=keras.initializers.Constant(self.lambda_init),
        )

    def call(self, inputs):
        mean = ops.mean(inputs, axis=self.reduction_axes, keepdims=True)
        variance = ops.mean(ops.square(inputs - mean), axis=self.reduction_axes, keepdims=True)
        normalized = (inputs - mean) * ops.rsqrt(variance + self.epsilon)
        return self.residual_lambda * inputs + normalized

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            "per_channel_lambda": self.per_channel_lambda,
            "lambda_init": self.lambda_init,
        }
