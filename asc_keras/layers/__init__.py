from asc_keras.layers.ds_flexi_block import DSFlexiBlock
from asc_keras.layers.residual_norm import ResidualNorm

__all__ = ["DSFlexiBlock", "ResidualNorm"]
