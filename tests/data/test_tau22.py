import shutil

import pytest

from asc_keras.data.tau22 import CLASSES, DatasetError, parse_filename, read_split


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
    with pytest.raises(DatasetError, match="bus-lyon-1-2-0-phone.wav"):
        read_split(dataset_copy, "train")


def test_missing_dataset_says_where_to_download(tmp_path):
    with pytest.raises(DatasetError, match="zenodo.org/record/6337421"):
        read_split(tmp_path, "train")
