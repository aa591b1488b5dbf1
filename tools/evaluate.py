"""Accuracy per device of a `.tflite` (LiteRT interpreter) or `.keras` model on a split.

Code: asc_keras/commands/evaluate.py (console script asc-keras-evaluate).
"""

import os

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

from asc_keras.commands.evaluate import main, run  # noqa: E402, F401

if __name__ == "__main__":
    run()
