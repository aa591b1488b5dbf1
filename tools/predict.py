"""Classifies audio files with a trained model and writes DCASE Task 1 submission rows.

Code: asc_keras/commands/predict.py (console script asc-keras-predict).
"""

import os

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

from asc_keras.commands.predict import main, run  # noqa: E402, F401

if __name__ == "__main__":
    run()
