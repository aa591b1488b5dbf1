from asc_keras.layers.ds_flexi_block import DSFlexiBlock
from asc_keras.layers.log_mel import LogMelSpectrogram, with_frontend
from asc_keras.layers.residual_norm import ResidualNorm

__all__ = ["DSFlexiBlock", "LogMelSpectrogram", "ResidualNorm", "with_frontend"]
