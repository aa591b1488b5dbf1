"""TAU Urban Acoustic Scenes 2022 Mobile (development): layout, names and split files.

Audio files are `audio/<scene>-<city>-<location>-<segment>-<index>-<device>.wav`. `meta.csv`
(tab separated: filename, scene_label, identifier, source_label) lists every clip;
`evaluation_setup/fold1_{train,evaluate,test}.csv` list the splits, and the DCASE24 subsets
`split5/10/25/50/100.csv` (in `split_setup/` or `evaluation_setup/`) the reduced training sets.
"""

import dataclasses
import os
from pathlib import Path

from asc_keras.errors import UserError
from asc_keras.utils import read_tsv_rows

# Alphabetical, the order of every published logit file.
CLASSES = (
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
)
DEVICES = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
REAL_DEVICES = ("a", "b", "c")
UNSEEN_DEVICES = ("s4", "s5", "s6")
SPLITS = ("train", "evaluate", "test")
SUBSETS = ("split5", "split10", "split25", "split50", "split100")
DOWNLOAD_HINT = (
    "download the TAU Urban Acoustic Scenes 2022 Mobile development set from "
    "https://zenodo.org/record/6337421, unpack it, and point the tools at the folder that "
    "holds meta.csv (config data.root, --data-root or ASC_DATA_ROOT)"
)


class DatasetError(UserError, ValueError):
    """A dataset file that cannot be used; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Record:
    filename: str  # relative to the dataset root, e.g. "audio/bus-lyon-1-2-0-a.wav"
    label: int  # index into CLASSES, -1 when unknown (the test split)
    device: str
    city: str
    identifier: str  # "<city>-<location>"

    @property
    def scene(self):
        return CLASSES[self.label] if self.label >= 0 else None


def parse_filename(filename, where=None):
    """Returns (scene, city, location, device) encoded in a TAU22 file name; an error names
    `where` (file and line) when given."""
    stem = Path(filename).name.removesuffix(".wav")
    parts = stem.split("-")
    if len(parts) != 6 or parts[5] not in DEVICES:
        raise DatasetError(
            f"{f'{where}: ' if where else ''}file name {filename!r} does not follow "
            f"<scene>-<city>-<location>-<segment>-<index>-<device>.wav with device in "
            f"{list(DEVICES)}"
        )
    scene, city, location, _, _, device = parts
    return scene, city, location, device


def label_of(scene, where):
    if scene not in CLASSES:
        raise DatasetError(f"{where}: unknown scene label {scene!r}; expected one of {CLASSES}")
    return CLASSES.index(scene)


def read_tsv(path, required):
    """Rows of a tab-separated file with a header, as dicts; checks the required columns."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; {DOWNLOAD_HINT}")
    columns, rows = read_tsv_rows(path)
    missing = [c for c in required if c not in columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {missing}; found {columns}, expected tab-separated "
            f"columns {list(required)}"
        )
    return rows


class RootedPaths:
    """Checks that paths named by dataset files stay inside the dataset root, symlinks
    resolved: an absolute path, `..` or a link out of the root is an error naming the line."""

    def __init__(self, root):
        self.root = os.path.realpath(root)
        self._folders = {}  # folder as written -> resolved, so each folder is resolved once

    def check(self, filename, where):
        if not filename or os.path.isabs(filename):
            raise DatasetError(
                f"{where}: file name {filename!r} is not a path relative to the dataset root"
            )
        folder, name = os.path.split(os.path.join(self.root, filename))
        if folder not in self._folders:
            self._folders[folder] = os.path.realpath(folder)
        path = os.path.normpath(os.path.join(self._folders[folder], name))
        if os.path.islink(path):
            path = os.path.realpath(path)
        if not path.startswith(self.root + os.sep):
            raise DatasetError(
                f"{where}: file name {filename!r} leads to {path}, outside the dataset root "
                f"{self.root}"
            )


def split_file(root, split):
    root = Path(root)
    if split in SPLITS:
        return root / "evaluation_setup" / f"fold1_{split}.csv"
    if split in SUBSETS:
        for folder in ("split_setup", "evaluation_setup"):
            if (root / folder / f"{split}.csv").is_file():
                return root / folder / f"{split}.csv"
        return root / "split_setup" / f"{split}.csv"
    raise DatasetError(f"unknown split {split!r}; valid: {list(SPLITS + SUBSETS)}")


def read_split(root, split):
    """The records of one split, labels from the split file (or meta.csv for the test split)."""
    root = Path(root)
    if not (root / "meta.csv").is_file():
        raise DatasetError(f"no meta.csv in {str(root)!r}; {DOWNLOAD_HINT}")
    meta_path = root / "meta.csv"
    paths = RootedPaths(root)
    meta = {}
    meta_rows = read_tsv(meta_path, ("filename", "scene_label", "identifier", "source_label"))
    for line, row in enumerate(meta_rows, start=2):
        paths.check(row["filename"], f"{meta_path}, line {line}")
        label_of(row["scene_label"], f"{meta_path}, line {line}")
        meta[row["filename"]] = row
    path = split_file(root, split)
    has_labels = split != "test"
    rows = read_tsv(path, ("filename", "scene_label") if has_labels else ("filename",))
    records = []
    for line, row in enumerate(rows, start=2):
        filename = row["filename"]
        where = f"{path}, line {line}"
        paths.check(filename, where)
        scene, city, location, device = parse_filename(filename, where)
        if filename in meta:
            meta_row = meta[filename]
            scene_label = row["scene_label"] if has_labels else meta_row["scene_label"]
            if meta_row["source_label"] != device:
                raise DatasetError(
                    f"{meta_path}: {filename!r} has source_label {meta_row['source_label']!r} "
                    f"but its name says device {device!r}"
                )
            identifier = meta_row["identifier"]
        elif has_labels:
            scene_label, identifier = row["scene_label"], f"{city}-{location}"
        else:
            scene_label, identifier = None, f"{city}-{location}"
        label = label_of(scene_label, where) if scene_label is not None else -1
        if label >= 0 and scene_label != scene:
            raise DatasetError(
                f"{where}: label {scene_label!r} disagrees with the file name {filename!r}"
            )
        records.append(Record(filename, label, device, city, identifier))
    if not records:
        raise DatasetError(f"{path} lists no files")
    return records


def resolve_data_root(config, data_root=None):
    """The dataset folder: `data_root` (a --data-root flag), else config data.root, else
    the ASC_DATA_ROOT variable; an error that says where to get the data otherwise."""
    root = data_root or config.data.root or os.environ.get("ASC_DATA_ROOT")
    if not root:
        raise DatasetError(f"no dataset folder given; {DOWNLOAD_HINT}")
    root = Path(root)
    if not (root / "meta.csv").is_file():
        raise DatasetError(f"{str(root)!r} holds no meta.csv; {DOWNLOAD_HINT}")
    return root


def with_data_root(config, data_root=None):
    """`config` with data.root resolved, once, at the command line: `data_root` (--data-root),
    else the config's, else ASC_DATA_ROOT, made absolute. Everything below reads
    config.data.root."""
    root = resolve_data_root(config, data_root).resolve()
    return dataclasses.replace(config, data=dataclasses.replace(config.data, root=str(root)))
