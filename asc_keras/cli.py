"""What every command-line tool shares: its argument parser and clear error exits. (Quiet
TensorFlow logs are `asc_keras.console`'s, set up before TensorFlow loads.)"""

import argparse
import sys


def argument_parser(doc):
    """An `ArgumentParser` described by the first line of a tool's `doc`, with `--verbose`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's own log lines (hidden by default: they report no problem)",
    )
    return parser


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


def load_keras(path):
    """A `.keras` model; a clear error when it is missing or cannot be loaded."""
    from pathlib import Path

    import keras

    import asc_keras  # noqa: F401  (registers the layers the file names)
    from asc_keras.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file {str(path)!r} does not exist")
    try:
        return keras.saving.load_model(path)
    except (ValueError, OSError) as error:
        raise UserError(f"{path}: not a loadable .keras model: {error}") from error


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
