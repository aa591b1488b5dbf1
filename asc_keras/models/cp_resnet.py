import keras

from asc_keras.layers.ds_flexi_block import batch_norm


def _residual_block(x, filters, kernel_size, name):
    shortcut = x
    y = keras.layers.Conv2D(
        filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv1"
    )(x)
    y = batch_norm(f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(
        filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv2"
    )(y)
    y = batch_norm(f"{name}_bn2")(y)
    if x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_shortcut")(x)
        shortcut = batch_norm(f"{name}_shortcut_bn")(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def cp_resnet(num_classes=10, input_shape=(256, 64, 1), width=24, name="cp_resnet"):
    """A receptive-field-regularised ResNet teacher in the style of CP-ResNet.

    A 5x5 stride-2 stem and max pooling, then three stages of two residual blocks with
    `width`, 2 `width` and 4 `width` channels. The first two stages use 3x3 kernels with max
    pooling after each. The last stage uses 1x1 kernels, which caps the receptive field as
    CP-ResNet does. The head is a 1x1 convolution to the classes, BN and global average
    pooling. With width 24 it has about 135 K parameters (45 M MACs).

    Reference: Koutini et al., "Receptive field regularization techniques for audio
    classification and tagging with deep convolutional neural networks", TASLP 2021; paper
    section II-D (the teacher ensemble).
    """
    if width < 1 or num_classes < 2:
        raise ValueError(
            f"cp_resnet needs width >= 1 and num_classes >= 2; got {width}, {num_classes}"
        )
    if len(input_shape) != 3 or min(input_shape[:2]) < 16:
        raise ValueError(
            f"input_shape {tuple(input_shape)!r} cannot be taken: expected "
            f"(mel bins, frames, channels) with mel bins and frames >= 16"
        )
    inputs = keras.Input(input_shape, name="log_mel")
    x = keras.layers.Conv2D(width, 5, strides=2, padding="same", use_bias=False, name="stem_conv")(
        inputs
    )
    x = batch_norm("stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.MaxPooling2D(2, name="stem_pool")(x)
    for stage, (filters, kernel_size) in enumerate(
        [(width, 3), (2 * width, 3), (4 * width, 1)], start=1
    ):
        for block in range(2):
            x = _residual_block(x, filters, kernel_size, f"stage{stage}_block{block + 1}")
        if stage < 3:
            x = keras.layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    x = keras.layers.Conv2D(num_classes, 1, use_bias=False, name="head_conv")(x)
    x = batch_norm("head_bn")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
