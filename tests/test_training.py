"""Checkpoints, resume after a real kill, and errors before any training starts."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
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


@pytest.mark.slow
def test_resume_after_a_kill_neither_loses_nor_repeats_epochs(tmp_path, synthetic_root):
    config = write_config(tmp_path / "tiny.yaml", synthetic_root, tmp_path / "cache")
    command, env = train_tool(config, "--out", tmp_path / "whole")
    subprocess.run(command, env=env, check=True, capture_output=True)

    command, env = train_tool(config, "--out", tmp_path / "killed")
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    marker = tmp_path / "killed" / "student" / "checkpoints" / "epoch-0002.json"
    deadline = time.time() + 300
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert marker.exists() and not (tmp_path / "killed" / "student" / "last.keras").exists()

    refused = subprocess.run(command, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    subprocess.run(command + ["--resume"], env=env, check=True, capture_output=True)
    history = np.genfromtxt(
        tmp_path / "killed" / "student" / "history.csv", delimiter=",", names=True
    )
    assert list(history["epoch"]) == [1, 2, 3, 4, 5, 6]
    whole = np.genfromtxt(tmp_path / "whole" / "student" / "history.csv", delimiter=",", names=True)
    # Same batches, same augmentation and restored optimiser state: the resumed run retraces
    # the uninterrupted one up to float rounding (multi-threaded CPU reductions).
    np.testing.assert_allclose(history["loss"], whole["loss"], rtol=1e-3)
    x = np.random.default_rng(0).normal(size=(4, 256, 64, 1)).astype(np.float32)
    resumed = keras.saving.load_model(tmp_path / "killed" / "student" / "last.keras")
    uninterrupted = keras.saving.load_model(tmp_path / "whole" / "student" / "last.keras")
    np.testing.assert_allclose(
        resumed.predict(x, verbose=0), uninterrupted.predict(x, verbose=0), rtol=1e-3, atol=1e-3
    )


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
