import shutil

import pytest

from asc_keras.data.tau22 import CLASSES, DatasetError, parse_filename, read_split
from asc_keras.errors import UserError


def test_file_names_are_parsed_the_way_tau22_encodes_them():
    scene, city, location, device = parse_filename(
        "audio/street_pedestrian-lyon-1162-44650-0-s4.wav"
    )
    assert (scene, city, location, device) == ("street_pedestrian", "lyon", "1162", "s4")


def test_splits_carry_labels_devices_and_cities(synthetic_root):
    train = read_split(synthetic_root, "train")
    evaluate = read_split(synthetic_root, "evaluate")
    assert {r.device for r in train} == {"a", "b", "c", "s1", "s2", "s3"}
    assert {"s4", "s5", "s6"} <= {r.device for r in evaluate}
    record = train[0]
    assert CLASSES[record.label] in record.filename and record.identifier.startswith(record.city)
    test = read_split(synthetic_root, "test")  # labels come from meta.csv
    assert [r.label for r in test] == [r.label for r in evaluate]
    subset = read_split(synthetic_root, "split25")
    assert 0 < len(subset) < len(train)
    assert {r.filename for r in subset} <= {
        r.filename for r in read_split(synthetic_root, "split50")
    }


def test_synthetic_subsets_follow_dcase24s_rule(synthetic_root):
    """Nested, whole recording segments, the same share of each class's segments, every
    class in each subset."""
    import math
    from collections import Counter

    from asc_keras.data.synthetic import segment_of
    from asc_keras.data.tau22 import SUBSETS

    train = read_split(synthetic_root, "train")
    per_class = Counter(r.label for r in train)  # one segment per synthetic clip
    previous = set()
    for subset in SUBSETS:
        records = read_split(synthetic_root, subset)
        names = {r.filename for r in records}
        assert previous <= names, subset
        previous = names
        share = int(subset.removeprefix("split")) / 100
        counts = Counter(r.label for r in records)
        assert counts == {c: max(1, math.ceil(share * n - 1e-9)) for c, n in per_class.items()}
        segments = {segment_of(r.filename) for r in records}
        assert {r.filename for r in train if segment_of(r.filename) in segments} == names


@pytest.fixture
def dataset_copy(synthetic_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root, ignore=shutil.ignore_patterns("audio", "asc_keras_cache"))
    return root


def test_missing_columns_name_the_file(dataset_copy):
    path = dataset_copy / "evaluation_setup" / "fold1_train.csv"
    path.write_text("filename\tlabel\naudio/x.wav\tbus\n")
    with pytest.raises(
        DatasetError, match=r"fold1_train.csv: missing column\(s\) \['scene_label'\]"
    ):
        read_split(dataset_copy, "train")


def test_unknown_scene_label_names_file_and_line(dataset_copy):
    path = dataset_copy / "evaluation_setup" / "fold1_train.csv"
    lines = path.read_text().splitlines()
    name = lines[2].split("\t")[0]
    lines[2] = f"{name}\tbeach"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"fold1_train.csv, line 3: unknown scene label 'beach'"):
        read_split(dataset_copy, "train")


def test_unparseable_device_names_the_file(dataset_copy):
    path = dataset_copy / "evaluation_setup" / "fold1_train.csv"
    path.write_text("filename\tscene_label\naudio/bus-lyon-1-2-0-phone.wav\tbus\n")
    with pytest.raises(
        DatasetError, match="fold1_train.csv, line 2: file name 'audio/bus-lyon-1-2-0-phone.wav'"
    ):
        read_split(dataset_copy, "train")


def test_missing_dataset_says_where_to_download(tmp_path):
    with pytest.raises(DatasetError, match="zenodo.org/record/6337421"):
        read_split(tmp_path, "train")


def test_an_unknown_scene_label_in_meta_csv_names_file_and_line(dataset_copy):
    path = dataset_copy / "meta.csv"
    lines = path.read_text().splitlines()
    fields = lines[4].split("\t")
    lines[4] = "\t".join([fields[0], "beach", *fields[2:]])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"meta.csv, line 5: unknown scene label 'beach'"):
        read_split(dataset_copy, "train")


@pytest.mark.parametrize("where", ["meta.csv", "evaluation_setup/fold1_train.csv"])
@pytest.mark.parametrize(
    "filename",
    [
        "audio/../../../outside/bus-lyon-1-2-0-a.wav",
        "/etc/bus-lyon-1-2-0-a.wav",
        "escape/bus-lyon-1-2-0-a.wav",  # a link to a folder outside the root
    ],
)
def test_paths_that_leave_the_dataset_root_are_refused(dataset_copy, tmp_path, where, filename):
    (tmp_path / "outside").mkdir()
    (dataset_copy / "escape").symlink_to(tmp_path / "outside")
    path = dataset_copy / where
    lines = path.read_text().splitlines()
    fields = lines[1].split("\t")
    lines[1] = "\t".join([filename, "bus", *fields[2:]])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"{where}, line 2: file name '{filename}' "):
        read_split(dataset_copy, "train")


def test_a_link_that_stays_inside_the_root_is_read(dataset_copy, synthetic_root):
    # audio/ as a link to a folder inside the root (the audio itself stays out of the copy)
    (dataset_copy / "wavs").symlink_to(synthetic_root / "audio")
    assert not (synthetic_root / "audio").is_relative_to(dataset_copy)
    (dataset_copy / "inside").mkdir()
    (dataset_copy / "inside" / "audio").symlink_to(dataset_copy / "inside")
    path = dataset_copy / "evaluation_setup" / "fold1_train.csv"
    lines = path.read_text().splitlines()
    name = lines[1].split("\t")[0].removeprefix("audio/")
    lines[1] = f"inside/audio/{name}\t{lines[1].split(chr(9))[1]}"
    path.write_text("\n".join(lines) + "\n")
    assert read_split(dataset_copy, "train")[0].filename == f"inside/audio/{name}"


def test_unknown_device_in_a_split_names_the_file_and_line(dataset_copy):
    path = dataset_copy / "evaluation_setup" / "fold1_train.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace("-a.wav", "-zz.wav", 1).replace("-b.wav", "-zz.wav", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"fold1_train.csv, line 4: file name .*-zz.wav"):
        read_split(dataset_copy, "train")


@pytest.mark.parametrize("name", ["meta.csv", "evaluation_setup/fold1_train.csv"])
def test_a_byte_that_is_not_utf8_names_the_file_and_offset(dataset_copy, name):
    path = dataset_copy / name
    data = path.read_bytes()
    offset = data.index(b"\n") + 3
    path.write_bytes(data[:offset] + b"\xff" + data[offset:])
    with pytest.raises(UserError, match=rf"{name}: not UTF-8 text: byte 0xff at offset {offset}"):
        read_split(dataset_copy, "train")
