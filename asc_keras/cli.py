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


def positive(kind):
    """An argparse type: a number of `kind` (int or float) above zero."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def check_output(path, inputs=(), flag="--out"):
    """Refuses, before any work, an output file that is one of the `inputs` or that cannot be
    written (a folder, a read-only or missing parent); a probe file is created and removed."""
    import tempfile
    from pathlib import Path

    from asc_keras.errors import UserError

    path = Path(path)
    same = [p for p in inputs if p.exists() and path.exists() and p.samefile(path)]
    if same:
        raise UserError(f"{flag} {str(path)!r} is one of the inputs; choose another output file")
    if path.is_dir():
        raise UserError(f"{flag} {str(path)!r} is a folder; expected an output file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-probe-"):
            pass
    except OSError as error:
        raise UserError(
            f"{flag} {str(path)!r} cannot be written: {error.strerror or error}"
        ) from None


def run(main):
    """Runs a tool's `main()`; a user error prints one clear line and exits with status 2.

    User errors are `UserError`s (a config, a dataset, a file, a run folder) and the
    `OSError`s of files the tool reads or writes; anything else is a bug and keeps its
    traceback.
    """
    from asc_keras.errors import UserError
    from asc_keras.utils import NO_SPACE, is_disk_full

    try:
        sys.exit(main())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        if is_disk_full(error):
            print(f"error: cannot write {error.filename or 'a file'}: {NO_SPACE}", file=sys.stderr)
        else:
            where = f"{error.filename}: " if error.filename else ""
            print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        if not is_disk_full(error):
            raise
        # A write that no `disk_full_is_an_error` block names (a library's own file).
        print(f"error: cannot write a file: {NO_SPACE}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(
            "interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr
        )
        sys.exit(130)


def load_keras(path):
    """A `.keras` model; a clear error when it is missing or cannot be loaded."""
    import zipfile
    from pathlib import Path

    import keras

    import asc_keras.layers  # noqa: F401  (registers the layers the file names)
    from asc_keras.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a .keras model (not a zip archive: truncated or damaged?)")
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
