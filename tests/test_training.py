"""Checkpoints and errors before any training starts (a real kill and resume of every stage:
test_fault_injection.py)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from asc_keras import ds_flexinet
from asc_keras.training import Checkpointer, valid_checkpoints

ROOT = Path(__file__).resolve().parents[1]


def write_config(path, synthetic_root, cache_dir, **sections):
    config = {
        "data": {"root": str(synthetic_root), "cache_dir": str(cache_dir)},
        "augment": {"dir": {"folder": "impulse_responses"}},
        "model": {"variant": "sm1"},
        "training": {"epochs": 6, "batch_size": 16, "warmup_epochs": 1},
        "distillation": {"enabled": False},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path.write_text(yaml.safe_dump(config))
    return path


def train_tool(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    return [sys.executable, str(ROOT / "tools" / "train.py"), *map(str, args), "--quiet"], env


def test_a_corrupt_checkpoint_is_never_loaded(tmp_path):
    model = ds_flexinet("sm1")
    model.compile(optimizer="adam", loss="mse")
    checkpointer = Checkpointer(tmp_path)
    checkpointer.set_model(model)
    for epoch in range(3):
        checkpointer.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1)})
    assert [epoch for epoch, _, _ in valid_checkpoints(tmp_path / "checkpoints")] == [3, 2]
    newest = tmp_path / "checkpoints" / "epoch-0003.weights.h5"
    newest.write_bytes(newest.read_bytes()[:1000])  # torn write
    assert [epoch for epoch, _, _ in valid_checkpoints(tmp_path / "checkpoints")] == [2]
    (tmp_path / "checkpoints" / "epoch-0002.json").write_text('{"epoch": 2, "weig')
    assert valid_checkpoints(tmp_path / "checkpoints") == []


def _fit_tiny(stage_dir, resume=False):
    """Two epochs of a small classifier through `fit_stage`, as every stage trains."""
    import keras
    import tensorflow as tf

    from asc_keras.config import config_from_dict
    from asc_keras.training import fit_stage

    config = config_from_dict({"training": {"epochs": 2, "batch_size": 4, "warmup_epochs": 0}})
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)).astype("float32"), rng.integers(0, 2, size=8)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat()
    fit_stage(
        model,
        lambda first_epoch: batches,
        steps=2,
        config=config,
        stage_dir=stage_dir,
        validation=tf.data.Dataset.from_tensor_slices((x, y)).batch(4),
        resume=resume,
        verbose=0,
    )
    return x


def test_a_stage_traces_its_training_step_once(tmp_path, monkeypatch):
    """Metrics, loss and optimizer are built before `fit`: a first trace that created them
    would make TensorFlow trace the step a second time (seconds per stage)."""
    import keras

    traced = []
    train_step = keras.Model.train_step

    def counting(self, data):
        traced.append(type(self).__name__)
        return train_step(self, data)

    monkeypatch.setattr(keras.Model, "train_step", counting)
    _fit_tiny(tmp_path / "stage")
    assert traced == ["Sequential"]


def test_a_stage_killed_after_its_last_checkpoint_rebuilds_its_model(tmp_path):
    import keras

    x = _fit_tiny(tmp_path)
    expected = keras.saving.load_model(tmp_path / "last.keras").predict(x, verbose=0)
    # What a kill -9 between the last epoch's checkpoint and last.keras leaves.
    (tmp_path / "last.keras").unlink()
    _fit_tiny(tmp_path, resume=True)
    rebuilt = keras.saving.load_model(tmp_path / "last.keras").predict(x, verbose=0)
    np.testing.assert_array_equal(rebuilt, expected)
    assert (tmp_path / "best.keras").is_file()


def test_incomplete_teacher_logits_fail_before_any_training(tmp_path, synthetic_root):
    from asc_keras.config import load_config
    from asc_keras.data.tau22 import read_split
    from asc_keras.distill import LogitFileError, TeacherLogits
    from asc_keras.recipe import run_training

    names = [r.filename for r in read_split(synthetic_root, "train")][:-5]
    TeacherLogits(names, np.zeros((len(names), 10))).save(tmp_path / "partial.npz")
    config = write_config(
        tmp_path / "kd.yaml",
        synthetic_root,
        tmp_path / "cache",
        teachers={"logit_files": [str(tmp_path / "partial.npz")]},
        distillation={"enabled": True},
    )
    with pytest.raises(LogitFileError, match="partial.npz: no logits for 5 of"):
        run_training(load_config(config), tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "student").exists()


def test_a_config_typo_stops_the_tool_with_one_line(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("trainig:\n  epochs: 3\n")
    command, env = train_tool(path)
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1].startswith(f"error: {path}: unknown key 'trainig'")
    )


def test_an_unwritable_run_folder_stops_the_tool_with_one_line(tmp_path, synthetic_root):
    config = write_config(tmp_path / "tiny.yaml", synthetic_root, tmp_path / "cache")
    (tmp_path / "a-file").write_text("in the way")
    command, env = train_tool(config, "--out", tmp_path / "a-file" / "run")
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot write the lock of run folder '{tmp_path}/a-file/run/.lock': Not a directory"
    )
    assert (tmp_path / "a-file").read_text() == "in the way"


@pytest.mark.parametrize("whose", ["run", "teacher"])
def test_a_missing_impulse_response_folder_stops_the_run_before_any_training(
    tmp_path, synthetic_root, whose
):
    from asc_keras.config import load_config
    from asc_keras.data.tau22 import DatasetError
    from asc_keras.recipe import run_training

    teacher = tmp_path / "teacher.yaml"
    folder = "missing_irs" if whose == "teacher" else None
    teacher.write_text(
        yaml.safe_dump(
            {
                "augment": {"dir": {"folder": folder}},
                "model": {"architecture": "cp_resnet", "width": 4},
                "distillation": {"enabled": False},
            }
        )
    )
    config = write_config(
        tmp_path / "kd.yaml",
        synthetic_root,
        tmp_path / "cache",
        augment={"dir": {"folder": "impulse_responses" if whose == "teacher" else "nowhere"}},
        teachers={"train_count": 1, "config": "teacher.yaml"},
        distillation={"enabled": True},
    )
    source = teacher if whose == "teacher" else config
    with pytest.raises(DatasetError, match=rf"{source}: augment.dir.folder: impulse-response"):
        run_training(load_config(config), tmp_path / "run", config_path=config, verbose=0)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "teachers").exists()


def test_quantization_student_best_takes_the_better_float_student():
    from asc_keras.config import config_from_dict
    from asc_keras.recipe import quantized_student

    def config(choice):
        return config_from_dict(
            {
                "quantization": {"student": choice},
                "distillation": {"compare_without_teacher": True},
            }
        )

    reports = {"student": {"accuracy": 0.47}, "student, no teacher": {"accuracy": 0.58}}
    stage, why = quantized_student(config("best"), reports)
    assert stage == "student-no-teacher"
    assert why == "best on evaluate: without a teacher 58.00 % > distilled 47.00 %"
    reports["student"]["accuracy"] = 0.58  # a tie keeps the distilled student
    assert quantized_student(config("best"), reports)[0] == "student"
    assert quantized_student(config("without_teacher"), reports)[0] == "student-no-teacher"
    assert quantized_student(config("distilled"), reports)[0] == "student"
    assert quantized_student(config("best"), {"student": {"accuracy": 0.5}}) == (
        "student",
        "the run's only student",
    )


def figures(text):
    """The numbers of a sentence, in order."""
    return re.findall(r"\d+\.\d+", text)


def test_the_distillation_verdict_says_whether_the_teachers_helped():
    from asc_keras.config import config_from_dict
    from asc_keras.recipe import distillation_verdict

    config = config_from_dict({})
    teachers = {"fused (evaluate)": {"accuracy": 0.472}}
    reports = {"student": {"accuracy": 0.479}, "student, no teacher": {"accuracy": 0.576}}
    verdict = distillation_verdict(config, reports, teachers)
    assert verdict["helped"] is False and verdict["points"] == pytest.approx(-9.7)
    text = verdict["verdict"]
    assert text.startswith("Distillation did not help")
    assert figures(text) == ["47.90", "9.70", "57.60", "47.20"]
    assert "less than without a teacher" in text and "stronger teachers" in text
    reports["student"]["accuracy"] = 0.6
    teachers["fused (evaluate)"]["accuracy"] = 0.7
    verdict = distillation_verdict(config, reports, teachers)
    assert verdict["helped"] is True
    text = verdict["verdict"]
    assert text.startswith("Distillation helped") and "more than without a teacher" in text
    assert figures(text) == ["60.00", "2.40", "57.60", "70.00"]
    assert "stronger teachers" not in text
    alone = distillation_verdict(config, {"student": {"accuracy": 0.6}}, {})
    assert "helped" not in alone
    assert "set distillation.compare_without_teacher" in alone["verdict"]


def test_teachers_far_better_on_their_training_clips_are_named_in_the_verdict():
    from asc_keras.config import config_from_dict
    from asc_keras.recipe import distillation_verdict

    teachers = {"fused (evaluate)": {"accuracy": 0.5}, "fused (train)": {"accuracy": 0.9}}
    reports = {"student": {"accuracy": 0.45}, "student, no teacher": {"accuracy": 0.46}}
    verdict = distillation_verdict(config_from_dict({}), reports, teachers)
    assert verdict["teachers_train"] == 0.9
    assert figures(verdict["verdict"]) == ["45.00", "1.00", "46.00", "50.00", "90.00"]
    assert "on the training clips they label" in verdict["verdict"]
    assert figures(verdict["warning"]) == ["40.0"]
    assert "they label the clips they trained on" in verdict["warning"]
    assert "teachers.folds: 5" in verdict["warning"]
    # Out of fold, the same gap has another cause, and the remedy is not offered again.
    out_of_fold = config_from_dict({"teachers": {"folds": 5}})
    warning = distillation_verdict(out_of_fold, reports, teachers)["warning"]
    assert "out of fold" in warning and "teachers.folds: 5" not in warning
    # A gap under 15 points says nothing.
    teachers["fused (train)"]["accuracy"] = 0.64
    assert "warning" not in distillation_verdict(config_from_dict({}), reports, teachers)
