"""DS-FlexiNet acoustic scene classification in Keras 3 with an int8 TFLite path."""

import importlib

from asc_keras import console as _console

_EXPORTS = {
    "DSFlexiBlock": "asc_keras.layers",
    "LogMelSpectrogram": "asc_keras.layers",
    "ResidualNorm": "asc_keras.layers",
    "with_frontend": "asc_keras.layers",
    "VARIANTS": "asc_keras.models",
    "ds_flexinet": "asc_keras.models",
}

if _console.is_tool():  # tools/*.py and the asc-keras-* console scripts, and their children
    _console.quiet_native_logs()  # before Keras loads TensorFlow
# A tool itself loads no Keras yet: it checks its arguments and locks its run folder first
# (the layers load, and register, on first use). Everyone else gets the layers registered
# for keras.saving at `import asc_keras`.
if not _console.is_tool_process():
    from asc_keras.layers import DSFlexiBlock, LogMelSpectrogram, ResidualNorm, with_frontend
    from asc_keras.models import VARIANTS, ds_flexinet


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'asc_keras' has no attribute {name!r}")


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
