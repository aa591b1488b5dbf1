import dataclasses
import math

import keras

from asc_keras.layers import DSFlexiBlock, ResidualNorm
from asc_keras.layers.ds_flexi_block import batch_norm
from asc_keras.layers.fast_paths import use_backend_convolution


@dataclasses.dataclass(frozen=True)
class Stage:
    filters: int
    blocks: int
    strides: int


@dataclasses.dataclass(frozen=True)
class Variant:
    """Widths and depths of one DS-FlexiNet size.

    stem: channels of the two 3x3 stride-2 convolutions. stages: (filters, blocks, strides) per
    stage, the first block of a stage carrying the stride. expansion: inverted-residual width.
    """

    stem: tuple
    stages: tuple
    expansion: int

    @property
    def total_stride(self):
        return 4 * math.prod(stage.strides for stage in self.stages)


# The paper gives each variant's parameters and MACs (Table II) but not its widths; these
# tables reproduce Table II within 0.5 % (see `python tools/complexity.py --all`).
VARIANTS = {
    "sm1": Variant(
        stem=(4, 12), stages=(Stage(16, 1, 1), Stage(24, 2, 2), Stage(24, 2, 2)), expansion=2
    ),
    "sm2": Variant(
        stem=(8, 16), stages=(Stage(16, 1, 1), Stage(32, 2, 2), Stage(32, 2, 2)), expansion=3
    ),
    "sm3": Variant(
        stem=(8, 16), stages=(Stage(16, 1, 1), Stage(24, 3, 2), Stage(32, 2, 2)), expansion=6
    ),
    "sm4": Variant(
        stem=(16, 32), stages=(Stage(32, 2, 2), Stage(48, 2, 2), Stage(64, 1, 2)), expansion=6
    ),
}

# Paper Table II: parameters and multiply-accumulates per 1 s clip.
PAPER_COMPLEXITY = {
    "sm1": {"params": 13.76e3, "macs": 3.88e6},
    "sm2": {"params": 30.69e3, "macs": 8.27e6},
    "sm3": {"params": 54.98e3, "macs": 14.34e6},
    "sm4": {"params": 126.12e3, "macs": 23.03e6},
}

NORMS = ("residual", "batch", "none")


def _stage_norm(norm, rn_axis, name):
    if norm == "residual":
        return ResidualNorm(axis=rn_axis, name=name)
    if norm == "batch":
        return batch_norm(name)
    return None


def resolve_variant(variant):
    if isinstance(variant, Variant):
        return variant
    if variant not in VARIANTS:
        raise ValueError(f"unknown DS-FlexiNet variant {variant!r}; valid: {sorted(VARIANTS)}")
    return VARIANTS[variant]


def ds_flexinet(
    variant="sm2",
    num_classes=10,
    input_shape=(256, 64, 1),
    norm="residual",
    rn_axis="channel",
    name=None,
):
    """Builds DS-FlexiNet: conv stem, stages of DSFlexiBlocks, stage normalisation, classifier.

    Args:
        variant: "sm1".."sm4" or a `Variant`.
        num_classes: number of scenes.
        input_shape: (mel bins, frames, 1), channels last.
        norm: normalisation after the stem and after each stage: "residual" (the paper's RN),
            "batch" or "none" (the three rows of the paper's Table V ablation).
        rn_axis: ResidualNorm statistics, "channel" (the paper) or "frequency".
        name: model name, by default "ds_flexinet_<variant>".

    Returns:
        A functional `keras.Model` mapping log-mel inputs to logits (no softmax).

    Example:
        >>> model = ds_flexinet("sm2")
        >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> model.input_shape, model.output_shape
        ((None, 256, 64, 1), (None, 10))

    Reference: paper section II-A, Fig. 1 and Table II.
    """
    config = resolve_variant(variant)
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {list(NORMS)}")
    input_shape = tuple(input_shape)
    if (
        len(input_shape) != 3
        or not all(isinstance(d, int) and d > 0 for d in input_shape)
        or min(input_shape[:2]) < config.total_stride
    ):
        raise ValueError(
            f"input_shape {input_shape!r} cannot be taken: expected (mel bins, frames, channels) "
            f"of positive ints with mel bins and frames >= {config.total_stride} (the network's "
            f"total stride), e.g. (256, 64, 1)"
        )
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
    if name is None:
        name = f"ds_flexinet_{variant}" if isinstance(variant, str) else "ds_flexinet"

    inputs = keras.Input(input_shape, name="log_mel")
    x = inputs
    for i, filters in enumerate(config.stem):
        stem_conv = keras.layers.Conv2D(
            filters, 3, strides=2, padding="same", use_bias=False, name=f"stem_conv{i + 1}"
        )
        x = use_backend_convolution(stem_conv)(x)
        x = batch_norm(f"stem_bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"stem_relu{i + 1}")(x)
    stage_norm = _stage_norm(norm, rn_axis, "stem_norm")
    if stage_norm is not None:
        x = stage_norm(x)
    for s, stage in enumerate(config.stages, start=1):
        for b in range(stage.blocks):
            x = DSFlexiBlock(
                stage.filters,
                expansion=config.expansion,
                strides=stage.strides if b == 0 else 1,
                name=f"stage{s}_block{b + 1}",
            )(x)
        stage_norm = _stage_norm(norm, rn_axis, f"stage{s}_norm")
        if stage_norm is not None:
            x = stage_norm(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
