"""Faults done for real: kill -9 in the middle and after the last epoch's checkpoint of every
kind of training stage (the teacher's first epoch and the labels-only student's last, the
distilled student while a .keras file is being written and after its last epoch, the QAT
child after each phase; the device model after its last epoch, and its QAT), each time
--resume, against the uninterrupted run of `tiny_recipe` (conftest.py); and two runs on one
folder at once."""

import json

import keras
import numpy as np
import pytest

from tests.helpers import DEVICE_STAGE, KILL_POINTS, KILLED_STAGES, QAT_KILL_POINTS

pytestmark = pytest.mark.slow


def test_a_second_run_on_a_busy_folder_is_refused_and_the_first_is_intact(tiny_recipe):
    second, whole = tiny_recipe["second"], tiny_recipe["whole"]
    assert second.returncode == 2 and "Traceback" not in second.stderr
    last_line = second.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: run folder '{whole}' is in use by another run (pid ")
    assert (whole / "config.yaml").read_bytes() == tiny_recipe["config_before"]
    summary = json.loads((whole / "summary.json").read_text())
    assert set(summary["reports"]) == {"student", "student, no teacher"}
    assert (whole / "quantized" / "model_int8.tflite").is_file()


def assert_same_history(resumed, uninterrupted, epochs=4):
    a = np.genfromtxt(resumed, delimiter=",", names=True)
    b = np.genfromtxt(uninterrupted, delimiter=",", names=True)
    assert list(a["epoch"]) == list(b["epoch"]) == list(range(1, epochs + 1))
    # Same batches, augmentations and optimiser state: equal up to float rounding of
    # multi-threaded CPU reductions.
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-3)


def assert_same_model(resumed, uninterrupted):
    x = np.random.default_rng(0).normal(size=(4, 128, 50, 1)).astype(np.float32)
    a = keras.saving.load_model(resumed).predict(x, verbose=0)
    b = keras.saving.load_model(uninterrupted).predict(x, verbose=0)
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_killed_at_every_stage_and_resumed_equals_the_uninterrupted_run(tiny_recipe):
    whole = tiny_recipe["whole"]
    run = whole.parent / "killed"
    seen = tiny_recipe["killed"].result(timeout=1800)
    stages = [*KILLED_STAGES, DEVICE_STAGE]
    for stage in stages:
        assert seen[stage] == [
            {"killed at": marker, "finished before the kill": False}
            for marker in KILL_POINTS[stage]
        ]
    refused = seen["rerun without --resume"]
    assert refused.returncode == 2 and "--resume" in refused.stderr
    # The QAT child dies with its parent, and no second QAT starts beside a running one.
    assert seen["qat"] == [
        {"killed at": marker, "left running": [], "finished before the kill": False}
        for marker in QAT_KILL_POINTS
    ]
    assert seen["device qat"] == {"killed at": QAT_KILL_POINTS[0], "left running": []}
    finished = seen["resumed to the end"]
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert seen["general qat resumed"]
    assert "resuming QAT from epoch" in finished.stdout  # the device model's
    # A kill while a file was being written leaves no temporary file behind the resume.
    assert sorted(p.name for p in run.rglob(".tmp-*")) == []

    for stage in stages:
        epochs = 2 if stage == DEVICE_STAGE else 4  # device_models.epochs of the tiny recipe
        assert_same_history(run / stage / "history.csv", whole / stage / "history.csv", epochs)
        assert_same_model(run / stage / "last.keras", whole / stage / "last.keras")
    np.testing.assert_array_equal(
        np.load(run / "teachers" / "fused.npz")["filenames"],
        np.load(whole / "teachers" / "fused.npz")["filenames"],
    )
    resumed = json.loads((run / "quantized" / "summary.json").read_text())
    uninterrupted = json.loads((whole / "quantized" / "summary.json").read_text())
    assert len(resumed["qat_history"]["loss"]) == 3
    np.testing.assert_allclose(
        resumed["qat_history"]["loss"], uninterrupted["qat_history"]["loss"], rtol=1e-3
    )
    from asc_keras.evaluation.tflite import TFLiteClassifier

    x = np.random.default_rng(1).normal(size=(8, 128, 50, 1)).astype(np.float32)
    models = [
        TFLiteClassifier((folder / "quantized" / "model_int8.tflite").read_bytes())
        for folder in (run, whole)
    ]
    step = models[0].output["quantization"][0]
    # Byte-identical here; allowed: 2 int8 steps of the logits, from float rounding upstream.
    assert np.abs(models[0].predict(x) - models[1].predict(x)).max() <= 2 * step + 1e-9
    # The device model's QAT resumed, and the system's report is the uninterrupted one's.
    resumed, uninterrupted = (
        json.loads((folder / DEVICE_STAGE / "quantized" / "summary.json").read_text())
        for folder in (run, whole)
    )
    np.testing.assert_allclose(
        resumed["qat_history"]["loss"], uninterrupted["qat_history"]["loss"], rtol=1e-3
    )
    resumed, uninterrupted = (
        json.loads((folder / "summary.json").read_text())["device_models"]
        for folder in (run, whole)
    )
    assert resumed == uninterrupted


def test_two_runs_of_one_config_give_identical_weights_and_histories(tiny_recipe):
    """training.deterministic (the default): the killed-and-resumed run and the uninterrupted
    one, two runs of one config on one machine, agree byte for byte in every stage."""
    whole = tiny_recipe["whole"]
    run = whole.parent / "killed"
    assert tiny_recipe["killed"].result(timeout=1800)["resumed to the end"].returncode == 0
    for stage in (*KILLED_STAGES, DEVICE_STAGE):
        assert (run / stage / "history.csv").read_bytes() == (
            whole / stage / "history.csv"
        ).read_bytes(), stage
        a = keras.saving.load_model(run / stage / "last.keras").get_weights()
        b = keras.saving.load_model(whole / stage / "last.keras").get_weights()
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b)), stage
    for logits in ("teachers/teacher-0/logits.npz", "teachers/fused.npz"):
        with np.load(run / logits) as a, np.load(whole / logits) as b:
            np.testing.assert_array_equal(a["logits"], b["logits"])
    resumed = json.loads((run / "quantized" / "summary.json").read_text())
    uninterrupted = json.loads((whole / "quantized" / "summary.json").read_text())
    assert resumed["qat_history"] == uninterrupted["qat_history"]
    assert (run / "quantized" / "model_int8.tflite").read_bytes() == (
        whole / "quantized" / "model_int8.tflite"
    ).read_bytes()
