"""Small helpers shared by the library and the tools: atomic writes and text tables."""

import contextlib
import csv
import errno
import io
import os
import tempfile
from pathlib import Path

from asc_keras.errors import UserError


class OutputError(UserError):
    """A file or folder that cannot be written (read-only, full, a file in the way)."""


class TextFileError(UserError, ValueError):
    """A text file (config, list, CSV) that is not UTF-8."""


def read_text(path):
    """The text of a UTF-8 file; a byte that is not UTF-8 is a `TextFileError` naming the
    file and the byte's offset."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TextFileError(
            f"{path}: not UTF-8 text: byte 0x{data[error.start]:02x} at offset {error.start} "
            f"({error.reason}); save the file as UTF-8"
        ) from None


def read_tsv_rows(path):
    """(column names, rows as dicts) of a tab-separated UTF-8 file with a header line."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter="\t")
    rows = list(reader)
    return reader.fieldnames or [], rows


@contextlib.contextmanager
def writing(path, what="file", hint=None):
    """Turns an `OSError` of the block into an `OutputError` naming `what` and `path`."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or error
        raise OutputError(
            f"cannot write {what} {str(path)!r}: {reason}{f'; {hint}' if hint else ''}"
        ) from error


NO_SPACE = "No space left on device"
_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error):
    """Whether `error`, or an error it was raised from, says that the disk is full: an
    `OSError` with ENOSPC / EDQUOT, or a library's error (h5py, TensorFlow, LiteRT) whose text
    carries the system's message."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _NO_SPACE_ERRNOS:
            return True
        text = str(error)
        if NO_SPACE in text or "Disk quota exceeded" in text or "errno = 28" in text:
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def disk_full_is_an_error(path, what="file"):
    """Turns a full disk met in the block, whatever library raised it, into an `OutputError`
    naming `what` and `path`; every other exception passes unchanged."""
    try:
        yield
    except OutputError:
        raise
    except Exception as error:
        if is_disk_full(error):
            raise OutputError(
                f"cannot write {what} {str(path)!r}: {NO_SPACE}; free some space and rerun "
                f"(a run continues with --resume)"
            ) from error
        raise


def current_umask():
    """The process's umask, read without changing it where the system allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds.

    Readers never see a half-written file: either the old file or the complete new one. The
    file gets the permissions a plain `open` would give it (0666 less the umask).
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # The temporary name ends like the real one: some writers insist on ".keras" or ".h5".
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=f"-{path.name}")
        os.close(fd)
    try:
        with disk_full_is_an_error(path):
            yield Path(tmp)
        with writing(path):
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def format_table(headers, rows, title=None):
    """Formats rows as an aligned plain-text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(_is_number(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(headers))
    ]

    def line(row):
        return "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)
        ).rstrip()

    out = [title] if title else []
    out += [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _is_number(text):
    try:
        float(text.rstrip("%x").replace(",", ""))
    except ValueError:
        return text in ("-", "")
    return True
