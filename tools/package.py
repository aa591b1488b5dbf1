"""Packages finished run folders as a DCASE 2025 Task 1 inference package.

Code: asc_keras/commands/package.py (console script asc-keras-package).
"""

import os

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

from asc_keras.commands.package import main, run  # noqa: E402, F401

if __name__ == "__main__":
    run()
