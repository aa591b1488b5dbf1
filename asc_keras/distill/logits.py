"""Teacher logits per clip, keyed by file name.

The format of record is `.npz` with `filenames` (str), `logits` (float32, clips x classes) and
`classes` (str, the class order). Logits made elsewhere (PaSST ensembles, ...) load the same way
from `.npz` or from a tab- or comma-separated `.csv` with a `filename` column followed by one
column per class, in the alphabetical class order of the dataset. The CP-JKU DCASE23 ensemble
logits (`ensemble_logits.pt`: one PyTorch tensor, one row per line of the dataset's
`meta.csv`, in that order, one column per class) load from `.pt` given the dataset root.
"""

import csv
import dataclasses
import io
import zipfile
from pathlib import Path

import numpy as np

from asc_keras.data.tau22 import CLASSES
from asc_keras.errors import UserError
from asc_keras.utils import atomic_path, read_tsv_rows


class LogitFileError(UserError, ValueError):
    """A logit file that does not fit the dataset; the message names the file."""


@dataclasses.dataclass
class TeacherLogits:
    filenames: list
    logits: np.ndarray
    classes: tuple = CLASSES
    source: str = "<memory>"
    extra: dict = dataclasses.field(default_factory=dict)  # e.g. fusion weights

    def __post_init__(self):
        self.filenames = [str(f) for f in self.filenames]
        self.logits = np.asarray(self.logits, np.float32)
        self.classes = tuple(str(c) for c in self.classes)
        if self.logits.shape != (len(self.filenames), len(self.classes)):
            raise LogitFileError(
                f"{self.source}: logits have shape {self.logits.shape}, expected "
                f"{(len(self.filenames), len(self.classes))} (files x classes)"
            )
        if not np.all(np.isfinite(self.logits)):
            raise LogitFileError(f"{self.source}: logits contain NaN or infinite values")
        self._row = {name: i for i, name in enumerate(self.filenames)}
        if len(self._row) != len(self.filenames):
            seen = set()
            twice = [f for f in self.filenames if f in seen or seen.add(f)]
            raise LogitFileError(
                f"{self.source}: {len(twice)} file name(s) appear more than once, e.g. "
                f"{twice[:3]}; each clip needs exactly one row of logits"
            )

    def check_classes(self, classes=CLASSES):
        if len(self.classes) != len(classes):
            raise LogitFileError(
                f"{self.source}: {len(self.classes)} classes, the dataset has {len(classes)}: "
                f"{list(classes)}"
            )
        if self.classes != tuple(classes):
            raise LogitFileError(
                f"{self.source}: class order {list(self.classes)} differs from the dataset's "
                f"{list(classes)}; reorder the columns"
            )

    def aligned_to(self, filenames):
        """Rows for `filenames`, in that order; an error lists files without logits."""
        missing = [f for f in filenames if f not in self._row]
        if missing:
            raise LogitFileError(
                f"{self.source}: no logits for {len(missing)} of {len(filenames)} files, "
                f"e.g. {missing[:3]}"
            )
        return self.logits[[self._row[f] for f in filenames]]

    def save(self, path):
        """Writes the `.npz` atomically."""
        path = Path(path)
        arrays = {
            "filenames": np.array(self.filenames),
            "logits": self.logits,
            "classes": np.array(self.classes),
            **{k: np.asarray(v) for k, v in self.extra.items()},
        }
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)


def load_logits(path, classes=CLASSES, root=None):
    """Loads a `.npz`, `.csv` or `.pt` logit file and checks its classes against `classes`
    (a `.pt` tensor's rows are the lines of `root`/meta.csv)."""
    path = Path(path)
    if not path.is_file():
        raise LogitFileError(f"logit file {str(path)!r} does not exist")
    if path.suffix == ".pt":
        teacher = _read_logit_tensor(path, root, classes)
    elif path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in ("filenames", "logits") if k not in data]
                if missing:
                    raise LogitFileError(f"{path}: missing array(s) {missing}")
                extra = {
                    k: data[k] for k in data.files if k not in ("filenames", "logits", "classes")
                }
                teacher = TeacherLogits(
                    data["filenames"].tolist(),
                    data["logits"],
                    tuple(data["classes"].tolist()) if "classes" in data else classes,
                    source=str(path),
                    extra=extra,
                )
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            if isinstance(error, LogitFileError):
                raise
            raise LogitFileError(
                f"{path}: not a readable .npz logit file (truncated or damaged?): {error}"
            ) from error
    elif path.suffix in (".csv", ".tsv"):
        teacher = _read_logit_table(path)
    else:
        raise LogitFileError(
            f"{path}: unknown logit file type {path.suffix!r}; use .npz, .csv or .pt"
        )
    teacher.check_classes(classes)
    return teacher


def _read_logit_table(path):
    """A `.csv` / `.tsv` logit file; errors name the file and the line."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as error:
        raise LogitFileError(f"{path}: not a text file: {error}") from error
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise LogitFileError(
            f"{path}: empty; expected a header line 'filename' followed by one column per class"
        )
    delimiter = "\t" if "\t" in lines[0] else ","
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    header = rows[0]
    if header[0] != "filename":
        raise LogitFileError(f"{path}: the first column must be 'filename', got {header[:1]}")
    filenames, logits = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise LogitFileError(
                f"{path}, line {line}: {len(row)} fields, the header has {len(header)} "
                f"(filename and {len(header) - 1} classes)"
            )
        try:
            logits.append([float(v) for v in row[1:]])
        except ValueError as error:
            raise LogitFileError(f"{path}, line {line}: non-numeric logit: {error}") from error
        filenames.append(row[0])
    return TeacherLogits(
        filenames,
        np.array(logits, np.float32).reshape(len(filenames), len(header) - 1),
        tuple(header[1:]),
        source=str(path),
    )


def _read_logit_tensor(path, root, classes):
    """A `.pt` file holding one (meta.csv lines x classes) tensor, as the CP-JKU DCASE23
    ensemble logits are published."""
    if root is None or not (Path(root) / "meta.csv").is_file():
        raise LogitFileError(
            f"{path}: a .pt logit file is indexed by the lines of the dataset's meta.csv; "
            f"no meta.csv in {str(root)!r} (set data.root or pass --data-root)"
        )
    try:
        import torch
    except ImportError as error:
        raise LogitFileError(
            f"{path}: reading .pt logit files needs PyTorch (CPU is enough: pip install "
            f"torch==2.13.0)"
        ) from error
    try:
        tensor = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        raise LogitFileError(f"{path}: not a readable PyTorch tensor file: {error}") from error
    if not isinstance(tensor, torch.Tensor):
        raise LogitFileError(
            f"{path}: expected one tensor (meta.csv lines x classes), found {type(tensor).__name__}"
        )
    filenames = [row["filename"] for row in read_tsv_rows(Path(root) / "meta.csv")[1]]
    logits = tensor.detach().to(torch.float32).numpy()
    if logits.ndim != 2 or len(logits) != len(filenames):
        raise LogitFileError(
            f"{path}: tensor of shape {tuple(logits.shape)}; expected ({len(filenames)}, "
            f"{len(classes)}): one row per line of {Path(root) / 'meta.csv'}"
        )
    return TeacherLogits(filenames, logits, classes, source=str(path))
