"""DS-FlexiNet acoustic scene classification in Keras 3 with an int8 TFLite path."""

import os as _os

if _os.environ.get("ASC_KERAS_TOOL") == "1":  # set by tools/*.py before they import asc_keras
    from asc_keras.console import quiet_native_logs as _quiet

    _quiet()  # before Keras loads TensorFlow

from asc_keras.layers import (  # noqa: E402
    DSFlexiBlock,
    LogMelSpectrogram,
    ResidualNorm,
    with_frontend,
)
from asc_keras.models import VARIANTS, ds_flexinet  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "DSFlexiBlock",
    "LogMelSpectrogram",
    "ResidualNorm",
    "VARIANTS",
    "ds_flexinet",
    "with_frontend",
    "__version__",
]
