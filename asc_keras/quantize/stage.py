"""The quantization stage of a run: QAT fine-tuning, int8 / float / PTQ TFLite export, checks
and evaluation. Runs in its own process (`python -m asc_keras.quantize.stage RUN_DIR`) since
tfmot switches the process to legacy Keras.

Writes RUN_DIR/quantized/: model_float.tflite, model_ptq_int8.tflite (post-training
quantization, the baseline), model_int8.tflite (QAT) with model_int8.h / .cc, a report per
model (JSON and confusion PNG) and summary.json, the last file, written when all is done.
QAT saves a checkpoint per epoch in qat-checkpoints/; a killed stage continues from there.
The stage holds the run folder's lock (inherited from tools/train.py) and dies with it.
"""

import argparse
import json
from pathlib import Path

import keras  # noqa: E402  (Keras 3 first: the student is a Keras 3 model)
import numpy as np  # noqa: E402

from asc_keras import cli  # noqa: E402
from asc_keras.config import device_model_config, load_config  # noqa: E402
from asc_keras.data.pipeline import (  # noqa: E402
    Splits,  # noqa: E402
    make_dataset,
    steps_per_epoch,
)
from asc_keras.distill import load_logits  # noqa: E402
from asc_keras.errors import UserError  # noqa: E402
from asc_keras.evaluation import device_report, format_reports  # noqa: E402
from asc_keras.evaluation.report import write_report  # noqa: E402
from asc_keras.evaluation.run_page import DEVICE_INT8_TABLE, INT8_TABLE  # noqa: E402
from asc_keras.evaluation.tflite import TFLiteClassifier  # noqa: E402
from asc_keras.mcu.summary import describe_cortex_m4  # noqa: E402
from asc_keras.quantize import qat  # noqa: E402
from asc_keras.quantize.c_array import write_c_array  # noqa: E402
from asc_keras.quantize.convert import check_int8, convert  # noqa: E402
from asc_keras.quantize.micro import check_micro, cortex_m4_figures  # noqa: E402
from asc_keras.quantize.twin import build_twin, float_tflite  # noqa: E402
from asc_keras.run_folder import (  # noqa: E402
    RunLock,
    device_stage,
    die_with_parent,
    quantized_folder,
)
from asc_keras.training import enable_determinism  # noqa: E402
from asc_keras.utils import atomic_write_bytes, atomic_write_text  # noqa: E402

# Which kernels produced which figure (the summary says so too).
KERNELS = {
    "accuracy": "LiteRT's builtin kernels, without the default XNNPACK delegate",
    "accuracy_reference": "LiteRT's reference kernels (int8 QAT, reference kernels): "
    "what TFLite Micro computes, and CMSIS-NN on the Cortex-M4 inputs checked",
    "micro": "TFLite Micro's reference kernels (x86) against LiteRT's reference kernels",
    "cortex_m4": "TFLite Micro with CMSIS-NN on an emulated Cortex-M4 (QEMU)",
}


REFERENCE = "int8 QAT, reference kernels"


def _converted(path, convert_model):
    """The TFLite model at `path`; converted and written (atomically) only when missing."""
    if path.is_file():
        return path.read_bytes()
    model_bytes = convert_model()
    atomic_write_bytes(path, model_bytes)
    return model_bytes


def quantize_run(run_dir, verbose=2, student_stage="student", device=None, distilled=None):
    """QAT, export, checks and evaluation of `run_dir`/`student_stage`/last.keras; returns
    the summary (read back when the stage already finished).

    The general student writes `run_dir`/quantized/. The model of `device` (its stage
    device-models/DEVICE, in place of `student_stage`) is fine-tuned and calibrated on that
    device's training clips, evaluated on its evaluation clips, and writes
    `run_dir`/device-models/DEVICE/quantized/.
    QAT distils from the run's teacher logits when `distilled` (default: unless the stage is
    the student trained without a teacher)."""
    run_dir = Path(run_dir)
    if device is not None:
        student_stage = device_stage(device)
    out = quantized_folder(run_dir, device)
    if (out / "summary.json").is_file():
        return json.loads((out / "summary.json").read_text())
    config = load_config(run_dir / "config.yaml")
    if config.training.deterministic:
        enable_determinism()
    student = keras.saving.load_model(run_dir / student_stage / "last.keras")
    splits = Splits.open(config, progress=False)
    if device is not None:
        splits, config = splits.of_device(device), device_model_config(config)
    teacher_path = run_dir / "teachers" / f"{config.teachers.fusion}.npz"
    # QAT fine-tunes as the student was trained: from the teachers, or on labels alone.
    if distilled is None:
        distilled = student_stage != "student-no-teacher"
    teacher = (
        load_logits(teacher_path)
        if config.distillation.enabled and distilled and teacher_path.is_file()
        else None
    )

    twin = build_twin(student)
    twin_error = twin_difference(twin, student, splits.evaluate, config)
    representative = [
        np.asarray(x)
        for x, _ in make_dataset(
            splits.train, config, training=True, seed=config.training.seed + 1, epochs=1
        ).take(config.quantization.representative_batches)
    ]
    # Written as soon as made: a resumed QAT stage does not convert them again.
    models = {
        "float": _converted(out / "model_float.tflite", lambda: float_tflite(student)),
        "ptq_int8": _converted(
            out / "model_ptq_int8.tflite", lambda: convert(twin, representative)
        ),
    }
    check_int8(models["ptq_int8"], "post-training int8 model")
    history, models["int8"] = quantization_aware_training(
        twin,
        config,
        splits.train,
        teacher=teacher,
        teacher_name=teacher_path.name,
        representative=representative,
        checkpoint_dir=out / "qat-checkpoints",
        verbose=verbose,
    )
    ops = check_int8(models["int8"], "QAT int8 model")
    atomic_write_bytes(out / "model_int8.tflite", models["int8"])
    write_c_array(models["int8"], out / "model_int8")

    eval_batches = make_dataset(splits.evaluate, config, batch_size=config.training.batch_size)
    reports = evaluate_models(student, models, eval_batches=eval_batches, splits=splits, out=out)
    micro_inputs = np.concatenate([np.asarray(x) for x, _ in eval_batches])
    micro = check_micro(models["int8"], micro_inputs[: config.quantization.micro_check_inputs])
    mcu = cortex_m4_figures(models["int8"], micro_inputs[: config.quantization.micro_check_inputs])
    summary = {
        "student": student_stage,
        "accuracy": {name: r["accuracy"] for name, r in reports.items()},
        "qat_drop_points": 100
        * (reports["float Keras"]["accuracy"] - reports["int8 QAT"]["accuracy"]),
        "qat_drop_points_reference": 100
        * (reports["float Keras"]["accuracy"] - reports[REFERENCE]["accuracy"]),
        "ptq_drop_points": 100
        * (reports["float Keras"]["accuracy"] - reports["int8 PTQ"]["accuracy"]),
        "int8_ops": ops,
        "twin_max_difference": twin_error,
        "kernels": KERNELS,
        "micro": micro,
        "cortex_m4": mcu,
        "qat_history": history,
        "reports": reports,
    }
    split = config.data.eval_split
    title = INT8_TABLE if device is None else DEVICE_INT8_TABLE
    print_summary(summary, title.format(split=split, device=device))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def twin_difference(twin, student, evaluate, config, tolerance=1e-4):
    """The largest difference between the tf_keras twin's and the student's logits on one
    evaluation batch; a `RuntimeError` above `tolerance`."""
    probe = np.asarray(next(iter(make_dataset(evaluate, config, batch_size=16)))[0])
    error = float(np.abs(twin.predict(probe, verbose=0) - student.predict(probe, verbose=0)).max())
    if error > tolerance:
        raise RuntimeError(f"the tf_keras twin differs from the student by {error}")
    return error


def quantization_aware_training(
    twin, config, train, *, teacher, teacher_name, representative, checkpoint_dir, verbose
):
    """QAT fine-tuning of the twin (resumable from `checkpoint_dir`), from the teacher
    logits or the labels; returns (history, the int8 TFLite model)."""
    quantization = config.quantization
    qat_model = qat.make_qat_model(twin)
    steps = steps_per_epoch(train, config.training.batch_size)

    def train_dataset(first_epoch, epochs):
        return make_dataset(
            train,
            config,
            teacher_logits=teacher,
            training=True,
            seed=config.training.seed + 2,
            first_epoch=first_epoch,
            epochs=epochs,
        )

    print(
        f"== QAT fine-tuning: {quantization.epochs} epochs "
        f"({quantization.freeze_epochs} with frozen BN statistics and quantizer ranges)"
    )
    print(
        f"{steps} steps per epoch, learning rate {quantization.learning_rate:g} (constant); "
        f"ranges calibrated on {quantization.representative_batches} training batches; "
        f"{'distilled from ' + teacher_name if teacher is not None else 'labels only'}"
    )
    history = qat.fine_tune(
        qat_model,
        train_dataset,
        steps=steps,
        quantization=quantization,
        distillation=config.distillation,
        with_teacher=teacher is not None,
        verbose=verbose,
        checkpoint_dir=checkpoint_dir,
    )
    return history, convert(qat_model, representative)


def evaluate_models(student, models, *, eval_batches, splits, out):
    """Per-device reports of the float Keras student and every TFLite model on the
    evaluation batches, each TFLite one also written to `out` (JSON and confusion PNG)."""
    labels, devices = splits.labels("evaluate"), splits.devices("evaluate")
    reports = {
        "float Keras": device_report(labels, student.predict(eval_batches, verbose=0), devices)
    }
    titles = {"float": "float TFLite", "ptq_int8": "int8 PTQ", "int8": "int8 QAT"}
    for name, model_bytes in models.items():
        logits = TFLiteClassifier(model_bytes, source=name).predict_dataset(eval_batches)
        reports[titles[name]] = device_report(labels, logits, devices)
        write_report(reports[titles[name]], out, f"report_{name}", titles[name])
    reports[REFERENCE] = reference_report(models["int8"], eval_batches, splits, out)
    return reports


def reference_report(model_bytes, eval_batches, splits, out):
    """The int8 model's report with LiteRT's reference kernels, the arithmetic TFLite Micro
    does: the builtin kernels round some ops (CONV_2D) one step apart, and on a student
    whose logits are often near a tie that moves a few % of the clips to another class.
    Written to `out`/report_int8_reference.json (and its confusion PNG)."""
    runner = TFLiteClassifier(model_bytes, reference_kernels=True, source="int8 QAT")
    logits = runner.predict_dataset(eval_batches)
    report = device_report(splits.labels("evaluate"), logits, splits.devices("evaluate"))
    write_report(report, out, "report_int8_reference", REFERENCE)
    return report


def print_summary(summary, title):
    reports, micro = summary["reports"], summary["micro"]
    print(format_reports(reports, title=title))
    print(
        f"accuracy drop, float -> int8: QAT {summary['qat_drop_points']:.2f} points "
        f"({summary['qat_drop_points_reference']:.2f} with the reference kernels, "
        f"as TFLite Micro computes), "
        f"post-training quantization {summary['ptq_drop_points']:.2f} points"
    )
    print(f"int8 ops: {', '.join(summary['int8_ops'])}")
    print(f"accuracy: {KERNELS['accuracy']}; {KERNELS['accuracy_reference']}")
    print(
        f"TFLite Micro: {micro['inputs']} inputs, {micro['mismatched_outputs']} differ from "
        f"LiteRT reference kernels; arena {micro['arena_bytes']} bytes, model "
        f"{micro['model_bytes']} bytes; class equal to the reported model's on "
        f"{micro['micro_same_class_as_reported']} of {micro['inputs']}"
    )
    print(describe_cortex_m4(summary["cortex_m4"]))


def main(argv=None):
    die_with_parent()  # started by tools/train.py: never outlive it
    parser = argparse.ArgumentParser(description="QAT, int8 export and evaluation of a run")
    parser.add_argument("run_dir")
    parser.add_argument(
        "--student",
        default="student",
        help="the stage folder whose last.keras becomes int8: student or student-no-teacher",
    )
    parser.add_argument("--device", help="quantize the model of this device instead")
    parser.add_argument(
        "--labels-only",
        action="store_true",
        help="fine-tune on labels alone (default: from the teacher logits for a distilled stage)",
    )
    parser.add_argument("--progress", type=int, default=2, help="Keras fit verbosity")
    parser.add_argument(
        "--reference-report",
        action="store_true",
        help="only write quantized/report_int8_reference.json of a finished stage (for runs "
        "quantized before that report existed)",
    )
    args = parser.parse_args(argv)
    with RunLock(args.run_dir):  # inherited from the run that started this process, if any
        if args.reference_report:
            report = write_reference_report(args.run_dir)
            print(f"int8 QAT, reference kernels: {100 * report['accuracy']:.2f} %")
        else:
            distilled = False if args.labels_only else None
            quantize_run(args.run_dir, args.progress, args.student, args.device, distilled)
    return 0


def write_reference_report(run_dir):
    """`reference_report` of a run whose QAT stage has finished."""
    out = Path(run_dir) / "quantized"
    if not (out / "summary.json").is_file():
        raise UserError(f"{out}: the QAT stage has not finished (no summary.json)")
    config = load_config(Path(run_dir) / "config.yaml")
    splits = Splits.open(config, progress=False)
    eval_batches = make_dataset(splits.evaluate, config, batch_size=config.training.batch_size)
    return reference_report((out / "model_int8.tflite").read_bytes(), eval_batches, splits, out)


if __name__ == "__main__":
    cli.run(main)
