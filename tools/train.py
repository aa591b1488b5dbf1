"""Trains a DS-FlexiNet student with the paper's recipe, stage by stage, in one run folder.

Code: asc_keras/commands/train.py (console script asc-keras-train).
"""

import os

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

from asc_keras.commands.train import main, run  # noqa: E402, F401

if __name__ == "__main__":
    run()
