"""Fuses teacher logit files (paper eq. 4) and prints every teacher's accuracy per device.

Code: asc_keras/commands/fuse_teachers.py (console script asc-keras-fuse-teachers).
"""

import os

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

from asc_keras.commands.fuse_teachers import main, run  # noqa: E402, F401

if __name__ == "__main__":
    run()
