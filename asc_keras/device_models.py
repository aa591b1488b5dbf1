"""DCASE 2025 Task 1 device models: after the general student, one fine-tuned copy of it per
training device listed in config.device_models, each trained on that device's clips alone and
quantized to its own int8 model. The system classifies a clip of a listed device with its
device model and any other clip with the general student.

Folders, each a resumable stage like the general student's:

    RUN/device-models/DEVICE/               the float fine-tuning (checkpoints, last.keras,
                                            report.json on DEVICE's evaluation clips)
    RUN/device-models/DEVICE/quantized/     its QAT and int8 export (asc_keras.quantize.stage)
    RUN/device-models/system.json           the general model against the system, per device,
                                            float and int8 (written last)
"""

import json
from pathlib import Path

import numpy as np

from asc_keras.config import ConfigError, device_model_config
from asc_keras.data.pipeline import make_dataset
from asc_keras.data.tau22 import read_split, resolve_data_root
from asc_keras.evaluation import device_report
from asc_keras.run_folder import DEVICE_MODELS, device_stage, quantized_folder
from asc_keras.utils import atomic_write_text

GENERAL_ROW = "general model, {kind}"
SYSTEM_ROW = "with device models, {kind}"


def table_title(split):
    return f"DCASE 2025 system on {split}: the general model and the device models, accuracy (%)"


def check_device_clips(config, source="config"):
    """Refuses, before any work, a listed device with fewer training clips than the device
    models' batch (none at all included), naming the device, its count and the key."""
    devices = config.device_models.devices
    if not devices:
        return
    records = read_split(resolve_data_root(config), config.data.train_split)
    counts = {device: sum(r.device == device for r in records) for device in devices}
    batch = device_model_config(config).training.batch_size
    for device, count in counts.items():
        if count < batch:
            raise ConfigError(
                f"{source}: device_models.devices lists {device!r}, which has {count} clips in "
                f"the training split {config.data.train_split!r}; a device model needs at "
                f"least one batch (device_models.batch_size, now {batch}): lower it or leave "
                f"the device out"
            )


def train_device_models(config, run_dir, splits, *, general, teacher, stages, quantize):
    """Fine-tunes `run_dir`/`general`/last.keras for every listed device (distilled from
    `teacher` when device_models.distilled) and quantizes each with `quantize(device,
    distilled)` when quantization is enabled. Returns the system reports."""
    from asc_keras.recipe import student_report  # the recipe imports this module

    run_dir = Path(run_dir)
    path = run_dir / DEVICE_MODELS / "system.json"
    if path.is_file():
        return json.loads(path.read_text())
    device_models = config.device_models
    device_config = device_model_config(config)
    distilled = teacher is not None and device_models.distilled
    source = "distilled from the teacher logits" if distilled else "labels only"
    for device in device_models.devices:
        mine = splits.of_device(device)
        print(
            f"== device model {device}: {general}/ fine-tuned on the {len(mine.train)} "
            f"training clips of device {device} ({source})"
        )
        student_report(
            device_config,
            run_dir / device_stage(device),
            mine,
            teacher=teacher if distilled else None,
            initial=run_dir / general / "last.keras",
            **stages,
        )
        if config.quantization.enabled:
            quantize(device, distilled)
    reports = system_reports(config, run_dir, splits, general)
    atomic_write_text(path, json.dumps(reports, indent=2))
    return reports


def system_reports(config, run_dir, splits, general):
    """Per-device reports on the evaluation split of the general model and of the system
    (each listed device's clips classified by its device model), float and, after QAT,
    int8 (LiteRT's builtin kernels, as the general model's "int8 QAT" row)."""
    import keras

    from asc_keras.evaluation.tflite import TFLiteClassifier

    run_dir = Path(run_dir)
    labels, devices = splits.labels("evaluate"), splits.devices("evaluate")
    batch = config.training.batch_size

    def float_logits(device, cache):  # device None: the general model
        stage = general if device is None else device_stage(device)
        model = keras.saving.load_model(run_dir / stage / "last.keras")
        return model.predict(make_dataset(cache, config, batch_size=batch), verbose=0)

    def int8_logits(device, cache):
        path = quantized_folder(run_dir, device) / "model_int8.tflite"
        runner = TFLiteClassifier(path.read_bytes(), source=str(path))
        return runner.predict_dataset(make_dataset(cache, config, batch_size=batch))

    kinds = {"float": float_logits}
    if config.quantization.enabled:
        kinds["int8"] = int8_logits
    reports = {}
    for kind, logits_of in kinds.items():
        general_logits = logits_of(None, splits.evaluate)
        system = np.array(general_logits, copy=True)
        for device in config.device_models.devices:
            rows = np.flatnonzero(devices == device)
            if len(rows):
                system[rows] = logits_of(device, splits.evaluate.subset(rows))
        reports[GENERAL_ROW.format(kind=kind)] = device_report(labels, general_logits, devices)
        reports[SYSTEM_ROW.format(kind=kind)] = device_report(labels, system, devices)
    return reports


def summary_of(config, reports, general, distilled):
    """The device models' part of summary.json."""
    return {
        "devices": list(config.device_models.devices),
        "general": general,
        "distilled": distilled,
        "accuracy": {
            name: {k: r[k] for k in ("accuracy", "devices", "groups")}
            for name, r in reports.items()
        },
    }
