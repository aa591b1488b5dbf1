"""Out-of-fold teacher logits (teachers.folds, tools/train_teacher.py --folds): the fold
assignment, a killed fold stage resumed, the logits each fold model hands over, and the
experiment runner's teacher sets."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from asc_keras.data.tau22 import Record, read_split
from asc_keras.distill.folds import FoldError, fold_assignment, out_of_fold


def test_folds_keep_each_place_whole_balance_classes_and_follow_the_seed(synthetic_root):
    records = read_split(synthetic_root, "train")
    folds = fold_assignment(records, 3, seed=0)
    # Every clip exactly once out of fold.
    assert folds.shape == (len(records),) and set(folds.tolist()) == {0, 1, 2}
    # A place (meta.csv identifier: every device's recording of it) lies in one fold only.
    places = {}
    for record, fold in zip(records, folds):
        places.setdefault(record.identifier, set()).add(int(fold))
    assert all(len(f) == 1 for f in places.values())
    # Stratified: each class's clips are spread over the folds about evenly (within the
    # clips of one place, the unit that cannot be split).
    place_size = Counter(r.identifier for r in records)
    for label in range(10):
        mine = [(r, f) for r, f in zip(records, folds) if r.label == label]
        counts = Counter(int(f) for _, f in mine)
        spread = max(counts[k] for k in range(3)) - min(counts[k] for k in range(3))
        assert spread <= max(place_size[r.identifier] for r, _ in mine), (label, counts)
    # Fixed by the seed.
    np.testing.assert_array_equal(folds, fold_assignment(records, 3, seed=0))
    assert not np.array_equal(folds, fold_assignment(records, 3, seed=1))


def test_more_folds_than_places_is_a_clear_error():
    records = [Record(f"audio/bus-lyon-1-0-{i}-a.wav", 0, "a", "lyon", "lyon-1") for i in range(4)]
    with pytest.raises(FoldError, match="teachers.folds 2 needs at least 2 recording places"):
        fold_assignment(records, 2, seed=0)


def test_out_of_fold_puts_each_fold_models_rows_in_place():
    assignment = np.array([1, 0, 1, 0, 0])
    fold_logits = [np.full((3, 2), 0.0, np.float32), np.array([[1, 1], [2, 2]], np.float32)]
    np.testing.assert_array_equal(
        out_of_fold(fold_logits, assignment), [[1, 1], [0, 0], [2, 2], [0, 0], [0, 0]]
    )


def test_the_runner_trains_one_teacher_set_per_folds_value_and_rows_share_it(
    tmp_path, monkeypatch, synthetic_root
):
    import asc_keras.recipe
    from asc_keras.experiment import Runner, load_experiment

    (tmp_path / "teacher.yaml").write_text("model: {architecture: cp_resnet}\n")
    (tmp_path / "base.yaml").write_text(
        f"data: {{root: {synthetic_root}}}\naugment: {{dir: {{folder: impulse_responses}}}}\n"
        "teachers: {train_count: 2, config: teacher.yaml}\nquantization: {enabled: false}\n"
    )
    (tmp_path / "grid.yaml").write_text(
        "config: base.yaml\nseeds: 2\ntables:\n  KD:\n"
        "    in-sample: {}\n"
        "    out-of-fold: {teachers: {folds: 3}}\n"
        "    out-of-fold, averaged: {teachers: {folds: 3, fusion: averaged}}\n"
        "    none: {distillation: {enabled: false}}\n"
    )
    trained = []

    def teacher_stage(config, teacher_config, folder, splits, **_):
        trained.append((config.teachers.folds, folder.name))
        for i in range(config.teachers.train_count):
            (folder / f"teacher-{i}").mkdir(parents=True, exist_ok=True)
            (folder / f"teacher-{i}" / "logits.npz").write_bytes(b"")

    ran = {}
    monkeypatch.setattr(asc_keras.recipe, "teacher_stage", teacher_stage)
    monkeypatch.setattr("asc_keras.data.pipeline.Splits.open", lambda config: None)
    monkeypatch.setattr(
        Runner, "run_one", lambda self, config, run_dir, title: ran.update({title: config.teachers})
    )
    monkeypatch.setattr(Runner, "write_results", lambda self: None)
    Runner(load_experiment(tmp_path / "grid.yaml"), tmp_path / "out").run()

    # Once per folds value, however many rows and seeds read it.
    assert trained == [(1, "teachers"), (3, "teachers-3-folds")]
    for title, teachers in ran.items():
        if title.startswith("KD / none"):
            assert teachers.logit_files == []
            continue
        folder = "teachers" if title.startswith("KD / in-sample") else "teachers-3-folds"
        assert [Path(f).parent.parent.name for f in teachers.logit_files] == [folder] * 2, title
        assert teachers.train_count == 0  # the runs read the shared logits
    assert len(ran) == 8  # 4 rows x 2 seeds


def test_more_folds_than_the_split_has_places_stops_the_run_before_its_first_stage(
    synthetic_root, tmp_path
):
    from asc_keras.config import ConfigError, load_config
    from asc_keras.recipe import check_paths

    (tmp_path / "teacher.yaml").write_text("model: {architecture: cp_resnet}\n")
    path = tmp_path / "run.yaml"
    path.write_text(
        f"data: {{root: {synthetic_root}}}\naugment: {{dir: {{folder: impulse_responses}}}}\n"
        "teachers: {train_count: 1, config: teacher.yaml, folds: 1000}\n"
    )
    with pytest.raises(ConfigError, match=r"run.yaml: teachers.folds 1000 needs at least 1000"):
        check_paths(load_config(path), path)


@pytest.mark.slow
def test_a_killed_fold_stage_resumes_and_every_clip_gets_its_fold_models_logits(
    synthetic_root, tmp_path
):
    """tools/train_teacher.py --folds 2, killed (kill -9) after the second fold model's
    first epoch, then resumed: the finished first fold is kept, the second goes on from its
    checkpoint. Each training clip's logits are then its fold model's predictions, the
    evaluation clips' the mean of both models'. (That a resumed stage equals an uninterrupted
    one is tests/test_fault_injection.py's.)"""
    import signal
    import subprocess

    import keras
    import yaml

    from asc_keras.config import load_config
    from asc_keras.data.pipeline import Splits
    from asc_keras.distill import load_logits
    from asc_keras.recipe import predict_logits
    from tests.helpers import run_tool, tool_command, wait_for

    config = tmp_path / "teacher.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(synthetic_root), "cache_dir": str(tmp_path / "cache")},
                "augment": {"dir": {"folder": "impulse_responses"}},
                "frontend": {"n_mels": 64, "hop_length": 1000},
                "model": {"architecture": "cp_resnet", "width": 4},
                "training": {"epochs": 2, "batch_size": 16, "warmup_epochs": 0},
                "distillation": {"enabled": False},
            }
        )
    )
    whole = tmp_path / "teacher"
    tool = ("train_teacher.py", config, "--folds", "2", "--out", whole)
    command, env = tool_command(*tool)
    first = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    marker = whole / "fold-1" / "checkpoints" / "epoch-0001.json"
    assert wait_for(marker, first), first.communicate()[1][-3000:]
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (whole / "logits.npz").exists()
    fold_0 = (whole / "fold-0" / "logits.npz").read_bytes()
    resumed = run_tool(*tool, "--resume", check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "fold 1/2" not in resumed.stdout and "resuming fold-1 from epoch 1" in resumed.stdout
    assert (whole / "fold-0" / "logits.npz").read_bytes() == fold_0
    history = (whole / "fold-1" / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2"]

    teacher = load_config(config)
    splits = Splits.open(teacher, progress=False)
    assignment = fold_assignment(splits.train.records, 2, seed=0)  # --fold-seed's default
    listed = (whole / "folds.tsv").read_text().splitlines()[1:]
    assert [line.split("\t") for line in listed] == [
        [name, str(fold)] for name, fold in zip(splits.train.filenames, assignment)
    ]
    logits = load_logits(whole / "logits.npz")
    assert logits.filenames == splits.train.filenames + splits.evaluate.filenames
    evaluate = []
    for fold in range(2):
        model = keras.saving.load_model(whole / f"fold-{fold}" / "last.keras")
        held_out = splits.train.subset(np.flatnonzero(assignment == fold))
        trained_on = splits.train.subset(np.flatnonzero(assignment != fold))
        assert not set(trained_on.filenames) & set(held_out.filenames)
        predicted = predict_logits(model, held_out, teacher)
        np.testing.assert_allclose(logits.aligned_to(held_out.filenames), predicted, atol=1e-5)
        evaluate.append(predict_logits(model, splits.evaluate, teacher))
    np.testing.assert_allclose(
        logits.aligned_to(splits.evaluate.filenames), np.mean(evaluate, axis=0), atol=1e-5
    )
    assert not np.allclose(evaluate[0], evaluate[1])  # two models, not one twice
