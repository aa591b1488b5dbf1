"""tools/train.py through every stage on a small synthetic dataset (the `tiny_recipe` run of
conftest.py), then the int8 tools."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import call_tool, run_tool

ROOT = Path(__file__).resolve().parents[1]
INT8 = "quantized/model_int8.tflite"


def quantized_summary(tiny_recipe):
    return json.loads((tiny_recipe["whole"] / "summary.json").read_text())["quantized"]


@pytest.mark.slow
def test_the_int8_model_is_residual_norm_in_int8_ops_and_matches_its_twin(tiny_recipe):
    quantized = quantized_summary(tiny_recipe)
    # ResidualNorm's mean is an average pool (CMSIS-NN on a Cortex-M), its sum of squares a
    # BATCH_MATMUL.
    ops = {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RSQRT", "MUL", "BATCH_MATMUL"}
    assert ops <= set(quantized["int8_ops"])
    assert quantized["twin_max_difference"] < 1e-4
    # The float TFLite model computes ResidualNorm as the formula reads (XNNPACK runs it).
    from asc_keras.quantize.convert import op_table

    float_model = (tiny_recipe["whole"] / "quantized/model_float.tflite").read_bytes()
    float_ops = {op for op, _, _ in op_table(float_model)}
    assert "MEAN" in float_ops and not {"BATCH_MATMUL", "RESIZE_NEAREST_NEIGHBOR"} & float_ops


@pytest.mark.slow
def test_tflite_micro_computes_what_the_reference_kernels_compute(tiny_recipe, tiny_evaluated):
    micro = quantized_summary(tiny_recipe)["micro"]
    assert micro["inputs"] == 20 and micro["arena_bytes"] > 0
    assert micro["mismatched_outputs"] == 0 and micro["max_int8_difference"] == 0
    # Bit-exact outputs give TFLite Micro the reference kernels' class on every input; how
    # often that is the reported (builtin-kernel) model's class, evaluate.py's per-clip
    # classes with both kernel sets say independently.
    builtin = tiny_evaluated(INT8)[1]["predicted"]
    reference = tiny_evaluated(INT8, reference=True)[1]["predicted"]
    first = list(builtin)[: micro["inputs"]]
    same = sum(builtin[name] == reference[name] for name in first)
    assert micro["reference_same_class_as_reported"] == same
    assert micro["micro_same_class_as_reported"] == same


@pytest.mark.slow
def test_without_the_arm_toolchain_the_stage_says_why_and_goes_on(tiny_recipe):
    quantized = quantized_summary(tiny_recipe)
    assert "builtin kernels" in quantized["kernels"]["accuracy"]
    # The tests run without ASC_TFLM_DIR (tests/helpers.py).
    assert quantized["cortex_m4"]["measured"] is False
    why = quantized["cortex_m4"]["why"]
    assert "ASC_TFLM_DIR" in why or "PATH" in why


@pytest.mark.slow
def test_the_quantization_stage_writes_every_model_and_report(tiny_recipe):
    run = tiny_recipe["whole"]
    for name in (
        "model_int8.tflite",
        "model_ptq_int8.tflite",
        "model_float.tflite",
        "model_int8.h",
        "model_int8.cc",
        "report_int8.json",
        "report_int8_confusion.png",
        "report_int8_reference.json",
    ):
        assert (run / "quantized" / name).is_file(), name
    assert (run / "teachers" / "fused.npz").is_file()


@pytest.mark.slow
def test_quantization_student_best_takes_the_better_float_student(tiny_recipe):
    summary = json.loads((tiny_recipe["whole"] / "summary.json").read_text())
    quantized = summary["quantized"]
    assert set(summary["reports"]) == {"student", "student, no teacher"}
    accuracy = {k: summary["reports"][k]["accuracy"] for k in summary["reports"]}
    alone_better = accuracy["student, no teacher"] > accuracy["student"]
    better = "student-no-teacher" if alone_better else "student"
    assert summary["quantized_student"]["stage"] == quantized["student"] == better
    assert summary["quantized_student"]["why"].startswith("best on evaluate: ")
    chosen = "student, no teacher" if alone_better else "student"
    assert quantized["accuracy"]["float Keras"] == pytest.approx(accuracy[chosen], abs=1e-9)


@pytest.mark.slow
def test_the_int8_model_holds_the_students_parameters(tiny_recipe):
    # At least the count with every BatchNorm folded into its convolution, at most the
    # unfolded count (the converter may leave a depthwise BatchNorm as MUL + ADD).
    import keras

    from asc_keras.complexity import count_model, count_tflite, folded_param_count

    run = tiny_recipe["whole"]
    student = keras.saving.load_model(run / "student" / "last.keras")
    int8_bytes = (run / "quantized" / "model_int8.tflite").read_bytes()
    counted = count_model(student)
    assert folded_param_count(counted) <= count_tflite(int8_bytes)["params"] <= counted.params


@pytest.mark.slow
def test_the_configs_front_end_shapes_every_model_and_tool(tiny_recipe):
    # 128 bins, hop 640: every model the run writes, and the tools take it from config.yaml.
    import keras
    import numpy as np

    from asc_keras.evaluation.tflite import TFLiteClassifier
    from asc_keras.inference import Classifier

    run = tiny_recipe["whole"]
    student = keras.saving.load_model(run / "student" / "last.keras")
    int8_bytes = (run / "quantized" / "model_int8.tflite").read_bytes()
    assert student.input_shape == (None, 128, 50, 1)  # 32000 samples // 640
    assert TFLiteClassifier(int8_bytes).input_shape == (128, 50, 1)
    report = json.loads((run / "quantized" / "report_int8.json").read_text())
    assert report["clips"] == 90  # the evaluate split, through the 128-bin front end
    classifier = Classifier(run / "quantized" / "model_int8.tflite")
    assert classifier.probabilities(np.zeros((3, 32000), "float32")).shape == (3, 10)


@pytest.mark.slow
def test_rerunning_a_finished_run_only_reports(tiny_recipe):
    again = run_tool("train.py", tiny_recipe["config"], "--out", tiny_recipe["whole"], "--quiet")
    assert "== teacher" not in again.stdout and "QAT fine-tuning" not in again.stdout
    assert "== student" in again.stdout  # the summary is printed again
    # The page it rewrites keeps every stage's table, the device model's int8 one included.
    from tests.helpers import parse_page

    captions = [t["caption"] for t in parse_page(tiny_recipe["whole"] / "report.html").tables]
    assert "Device model b, float vs int8 on its evaluate clips: accuracy (%)" in captions


@pytest.mark.slow
def test_evaluate_py_gives_the_runs_int8_accuracies(tiny_recipe, tiny_evaluated):
    run = tiny_recipe["whole"]
    quantized = quantized_summary(tiny_recipe)
    evaluated, report = tiny_evaluated(INT8)
    assert report["accuracy"] == pytest.approx(
        json.loads((run / "quantized" / "report_int8.json").read_text())["accuracy"]
    )
    assert "S6" in evaluated.stdout
    # With LiteRT's reference kernels (TFLite Micro's arithmetic), as the run reports it.
    reference = json.loads((run / "quantized" / "report_int8_reference.json").read_text())
    assert quantized["accuracy"]["int8 QAT, reference kernels"] == reference["accuracy"]
    assert quantized["qat_drop_points_reference"] == pytest.approx(
        100 * (quantized["accuracy"]["float Keras"] - reference["accuracy"])
    )
    assert "LiteRT's reference kernels" in quantized["kernels"]["accuracy_reference"]
    evaluated = tiny_evaluated(INT8, reference=True)[1]
    assert evaluated["accuracy"] == pytest.approx(reference["accuracy"])


@pytest.mark.slow
def test_a_finished_stage_writes_its_reference_report_on_request(tiny_recipe, tmp_path):
    run = tiny_recipe["whole"]
    reference = json.loads((run / "quantized" / "report_int8_reference.json").read_text())
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


@pytest.mark.slow
def test_evaluate_refuses_a_config_with_another_class_count(tiny_recipe, tmp_path):
    config, run = tiny_recipe["config"], tiny_recipe["whole"]
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(config.read_text().replace("variant: sm1", "variant: sm1\n  num_classes: 5"))
    refused = call_tool("evaluate", run / "quantized" / "model_int8.tflite", wrong)
    assert refused.returncode == 2
    assert "10 classes" in refused.stderr and "5 classes" in refused.stderr


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
    qat_log = log.split("== QAT fine-tuning")[1].split("== device model")[0]
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
        "Device model b, float vs int8 on its evaluate clips: accuracy (%)",
        "DCASE 2025 system on evaluate: the general model and the device models, accuracy (%)",
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
