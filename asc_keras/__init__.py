"""DS-FlexiNet acoustic scene classification in Keras 3 with an int8 TFLite path."""

from asc_keras import console as _console

if _console.is_tool():  # tools/*.py and the asc-keras-* console scripts
    _console.quiet_native_logs()  # before Keras loads TensorFlow

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
