"""Parameters, MACs and int8 bytes of DS-FlexiNet under the DCASE limits.

Code: asc_keras/commands/complexity.py (console script asc-keras-complexity).
"""

import os

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

from asc_keras.commands.complexity import main, run  # noqa: E402, F401

if __name__ == "__main__":
    run()
