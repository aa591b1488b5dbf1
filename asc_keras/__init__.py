"""DS-FlexiNet acoustic scene classification in Keras 3 with an int8 TFLite path."""

from asc_keras.layers import DSFlexiBlock, ResidualNorm
from asc_keras.models import VARIANTS, ds_flexinet

__version__ = "0.1.0"
__all__ = ["DSFlexiBlock", "ResidualNorm", "VARIANTS", "ds_flexinet", "__version__"]
