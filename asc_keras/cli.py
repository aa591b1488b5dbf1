"""What every command-line tool shares: quiet TensorFlow logs and clear error exits."""

import os
import sys


def quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def run(main):
    """Runs a tool's `main()`; a user error prints one clear line and exits with status 2.

    User errors are `UserError`s (a config, a dataset, a file, a run folder) and the
    `OSError`s of files the tool reads or writes; anything else is a bug and keeps its
    traceback.
    """
    from asc_keras.errors import UserError

    try:
        sys.exit(main())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(
            "interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr
        )
        sys.exit(130)


def read_tflite(path):
    """The bytes of a `.tflite` file; a clear error when it is missing or not a TFLite model."""
    from pathlib import Path

    from asc_keras.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file {str(path)!r} does not exist")
    data = path.read_bytes()
    if data[4:8] != b"TFL3":
        raise UserError(f"{path} is not a TFLite model (no TFL3 identifier)")
    return data
