"""Runs a grid of recipe configs over seeds: the paper's Tables IV and V as one command.

Code: asc_keras/commands/experiment.py (console script asc-keras-experiment).
"""

import os

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

from asc_keras.commands.experiment import main, run  # noqa: E402, F401

if __name__ == "__main__":
    run()
