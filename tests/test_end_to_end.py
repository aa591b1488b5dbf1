"""tools/train.py through every stage on a small synthetic dataset (the `tiny_recipe` run of
conftest.py), then the int8 tools."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_tool(name, *args, check=True):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / name), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        check=check,
    )


@pytest.mark.slow
def test_the_whole_recipe_ends_with_a_checked_int8_model(tiny_recipe, tmp_path):
    config, run = tiny_recipe["config"], tiny_recipe["whole"]
    summary = json.loads((run / "summary.json").read_text())
    quantized = summary["quantized"]
    ops = set(quantized["int8_ops"])
    # ResidualNorm's mean is an average pool (CMSIS-NN on a Cortex-M), its variance a MEAN.
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RSQRT", "MUL", "MEAN"} <= ops
    assert quantized["twin_max_difference"] < 1e-4
    micro = quantized["micro"]
    assert micro["inputs"] == 20 and micro["arena_bytes"] > 0
    assert micro["max_int8_difference"] <= 1
    assert 0 <= micro["micro_same_class_as_reported"] <= 20
    assert 0 <= micro["reference_same_class_as_reported"] <= 20
    assert "builtin kernels" in quantized["kernels"]["accuracy"]
    # The tests run without ASC_TFLM_DIR (tests/helpers.py): the summary says why there are no
    # Cortex-M4 figures, and the stage went on.
    assert quantized["cortex_m4"]["measured"] is False
    assert (
        "ASC_TFLM_DIR" in quantized["cortex_m4"]["why"] or "PATH" in quantized["cortex_m4"]["why"]
    )
    for name in (
        "model_int8.tflite",
        "model_ptq_int8.tflite",
        "model_float.tflite",
        "model_int8.h",
        "model_int8.cc",
        "report_int8.json",
        "report_int8_confusion.png",
    ):
        assert (run / "quantized" / name).is_file(), name
    assert set(summary["reports"]) == {"student", "student, no teacher"}
    # quantization.student: best took the better float student on the evaluate split.
    accuracy = {k: summary["reports"][k]["accuracy"] for k in summary["reports"]}
    better = (
        "student-no-teacher"
        if accuracy["student, no teacher"] > accuracy["student"]
        else ("student")
    )
    assert summary["quantized_student"]["stage"] == quantized["student"] == better
    assert summary["quantized_student"]["why"].startswith("best on evaluate: ")
    chosen = "student" if better == "student" else "student, no teacher"
    assert quantized["accuracy"]["float Keras"] == pytest.approx(accuracy[chosen], abs=1e-9)
    assert (run / "teachers" / "fused.npz").is_file()

    # The int8 model holds the student's parameters: at least the count with every BatchNorm
    # folded into its convolution, at most the unfolded count (the converter leaves some
    # depthwise BatchNorms as MUL + ADD; seen for sm1, not for sm2).
    import keras

    from asc_keras.complexity import count_model, count_tflite, folded_param_count

    student = keras.saving.load_model(run / "student" / "last.keras")
    int8_bytes = (run / "quantized" / "model_int8.tflite").read_bytes()
    counted = count_model(student)
    assert folded_param_count(counted) <= count_tflite(int8_bytes)["params"] <= counted.params

    # The config's front end (128 bins, hop 640) shapes every model the run writes, and the
    # run's tools take it from the run's config.yaml.
    import numpy as np

    from asc_keras.evaluation.tflite import TFLiteClassifier
    from asc_keras.inference import Classifier

    assert student.input_shape == (None, 128, 50, 1)  # 32000 samples // 640
    assert TFLiteClassifier(int8_bytes).input_shape == (128, 50, 1)
    assert micro["mismatched_outputs"] == 0
    report = json.loads((run / "quantized" / "report_int8.json").read_text())
    assert report["clips"] == 90  # the evaluate split, through the 128-bin front end
    classifier = Classifier(run / "quantized" / "model_int8.tflite")
    assert classifier.probabilities(np.zeros((3, 32000), "float32")).shape == (3, 10)

    # Rerunning a finished run only reports: every stage is skipped.
    again = run_tool("train.py", config, "--out", run, "--quiet")
    assert "== teacher" not in again.stdout and "QAT fine-tuning" not in again.stdout

    evaluated = run_tool(
        "evaluate.py", run / "quantized" / "model_int8.tflite", config, "--out", tmp_path / "eval"
    )
    report = json.loads((tmp_path / "eval" / "model_int8_evaluate.json").read_text())
    assert report["accuracy"] == pytest.approx(
        json.loads((run / "quantized" / "report_int8.json").read_text())["accuracy"]
    )
    assert "S6" in evaluated.stdout
    # The run also reports the int8 model with LiteRT's reference kernels (TFLite Micro's
    # arithmetic); evaluate.py --reference-kernels gives the same figure.
    reference = json.loads((run / "quantized" / "report_int8_reference.json").read_text())
    assert quantized["accuracy"]["int8 QAT, reference kernels"] == reference["accuracy"]
    assert quantized["qat_drop_points_reference"] == pytest.approx(
        100 * (quantized["accuracy"]["float Keras"] - reference["accuracy"])
    )
    assert "LiteRT's reference kernels" in quantized["kernels"]["accuracy_reference"]
    run_tool(
        "evaluate.py",
        run / "quantized" / "model_int8.tflite",
        config,
        "--out",
        tmp_path / "eval",
        "--reference-kernels",
    )
    evaluated = json.loads((tmp_path / "eval" / "model_int8_evaluate_reference.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(reference["accuracy"])
    # A run quantized before this report existed gets it from the stage's --reference-report.
    old = tmp_path / "old-run"
    (old / "quantized").mkdir(parents=True)
    shutil.copy(run / "config.yaml", old)
    for name in ("summary.json", "model_int8.tflite"):
        shutil.copy(run / "quantized" / name, old / "quantized")
    stage = [sys.executable, "-m", "asc_keras.quantize.stage", "--reference-report"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([*stage, old], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{100 * reference['accuracy']:.2f} %" in done.stdout
    again = json.loads((old / "quantized" / "report_int8_reference.json").read_text())
    assert again["accuracy"] == reference["accuracy"]
    (old / "quantized" / "summary.json").unlink()
    refused = subprocess.run([*stage, old], capture_output=True, text=True, cwd=ROOT, env=env)
    assert refused.returncode == 2 and "has not finished (no summary.json)" in refused.stderr

    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(config.read_text().replace("variant: sm1", "variant: sm1\n  num_classes: 5"))
    refused = run_tool("evaluate.py", run / "quantized" / "model_int8.tflite", wrong, check=False)
    assert (
        refused.returncode == 2 and "10 classes" in refused.stderr and "5 classes" in refused.stderr
    )


@pytest.mark.slow
def test_the_run_prints_what_it_derived_and_teachers_take_the_runs_impulse_responses(
    tiny_recipe,
):
    import re

    from asc_keras.config import load_config

    run, log = tiny_recipe["whole"], tiny_recipe["stdout"]
    # teacher.yaml names no impulse-response folder: the teachers use the run's.
    teacher = load_config(run / "teachers" / "config.yaml")
    assert teacher.augment.dir.folder == "impulse_responses"
    assert teacher.augment.dir.probability == 0.4  # the rest stays the teacher's own
    # Values the config left to be derived are printed where they are used.
    assert "8 steps per epoch x 4 epochs; learning rate: linear warm-up from 0 over 8 steps" in log
    energy = json.loads(
        (tiny_recipe["config"].parent / "cache" / "train-32000hz" / "manifest.json").read_text()
    )["mean_energy"]
    assert f"ADIR, energy threshold {energy:g} (auto: the training split's mean energy)" in log
    assert "8 steps per epoch, learning rate 1e-05 (constant)" in log
    # QAT counts its epochs once, over both phases, and names its metric as training does.
    qat_log = log.split("== QAT fine-tuning")[1]
    assert re.findall(r"Epoch (\d+)/(\d+)", qat_log) == [("1", "3"), ("2", "3"), ("3", "3")]
    assert "packed_accuracy" not in log and " - accuracy: " in qat_log


@pytest.mark.slow
def test_the_run_shows_no_native_log_lines_and_one_page_with_every_printed_table(tiny_recipe):
    from tests.helpers import NATIVE_PREFIXES, parse_page, printed_tables

    run, log = tiny_recipe["whole"], tiny_recipe["stdout"]
    # TensorFlow's native log lines are gone from both streams, the QAT process's included.
    for stream in (log, tiny_recipe["stderr"]):
        noise = [line for line in stream.splitlines() if line.startswith(NATIVE_PREFIXES)]
        assert noise == [], noise[:3]
    assert "absl::InitializeLog" not in tiny_recipe["stderr"]

    # The distillation verdict is printed and on the page.
    summary = json.loads((run / "summary.json").read_text())
    verdict = summary["distillation"]
    assert verdict["verdict"] in log
    helped = verdict["distilled"] > verdict["without_teacher"]
    assert verdict["helped"] == helped and verdict["verdict"].startswith(
        "Distillation helped" if helped else "Distillation did not help"
    )

    page = parse_page(run / "report.html")
    assert "Run finished" in (run / "report.html").read_text()
    assert verdict["verdict"] in (run / "report.html").read_text()
    assert page.outside == []
    shown = {t["caption"]: t["rows"] for t in page.tables}
    printed = printed_tables(log)
    assert set(printed) == {
        "Teacher logits: accuracy (%) per device",
        "Float student on evaluate: accuracy (%) per device",
        "Float vs int8 on evaluate: accuracy (%)",
    }
    for title, rows in printed.items():
        assert shown[title] == rows, title
    curves = [f"training curves of {n}" for n in ("teachers/teacher-0", "student")]
    assert set(curves + ["training curves of QAT (int8)"]) <= set(page.images)
    assert "confusion matrix of int8 QAT" in page.images


@pytest.mark.slow
@pytest.mark.browser
def test_a_real_browser_shows_every_table_and_picture_of_the_page(tiny_recipe, tmp_path):
    import shutil

    if not shutil.which("chromium"):
        pytest.skip("needs Chromium: apt-get install chromium")
    from tests.helpers import parse_page

    run = tiny_recipe["whole"]
    page = parse_page(run / "report.html")
    shown = run_tool("check_page.py", run, "--screenshot", tmp_path / "page.png")
    assert (
        f"{len(page.tables)} tables, {len(page.images)} of {len(page.images)} pictures decoded, "
        "0 requests outside the file"
    ) in shown.stdout
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
