"""The system meta-information file of a packaged system: OUT/LABEL.meta.yaml.

Its blocks are the ones DCASE Task 1 submissions have carried since 2020: `submission` (label,
name, abbreviation, authors), `system` (description, complexity, external datasets, source
code) and `results.development_dataset` (overall, class-wise and device-wise accuracy and log
loss). What a run folder knows is filled in: the front end, augmentations, model, teachers,
distillation, quantization and device models from its config; parameters, parameter bytes and
MACs per model from the complexity counter; the development results from classifying the
run's evaluation split through the packaged models. What only the author can say is a
placeholder string starting with PLACEHOLDER, listed by `placeholders`.
"""

import numpy as np
import yaml

from asc_keras.data.tau22 import DEVICES
from asc_keras.utils import atomic_write_text

PLACEHOLDER = "PLACEHOLDER"


def _ask(what):
    return f"{PLACEHOLDER}: {what}"


def development_results(labels, probabilities, devices, classes):
    """Accuracy (%) and log loss overall, per class and per device. Overall accuracy is the
    macro average of the class-wise accuracies (the challenge's ranking metric) and overall
    log loss the mean of the class-wise ones."""
    labels, devices = np.asarray(labels), np.asarray(devices)
    probabilities = np.asarray(probabilities, np.float64)
    correct = probabilities.argmax(axis=1) == labels
    losses = -np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-15, 1))

    def scores(where):
        return {
            "accuracy": round(100 * float(correct[where].mean()), 2),
            "logloss": round(float(losses[where].mean()), 3),
        }

    class_wise = {c: scores(labels == i) for i, c in enumerate(classes) if (labels == i).any()}
    device_wise = {d: scores(devices == d) for d in DEVICES if (devices == d).any()}
    overall = {
        "accuracy": round(float(np.mean([s["accuracy"] for s in class_wise.values()])), 2),
        "logloss": round(float(np.mean([s["logloss"] for s in class_wise.values()])), 3),
    }
    return {"overall": overall, "class_wise": class_wise, "device_wise": device_wise}


def _augmentations(config):
    augment, found = config.augment, []
    if augment.time_roll:
        found.append(f"time roll (up to {augment.time_roll} samples)")
    if augment.freq_mask:
        found.append(f"frequency masking (up to {augment.freq_mask} mel bins)")
    if augment.freq_mixstyle.probability:
        mixstyle = augment.freq_mixstyle
        found.append(f"Freq-MixStyle (p {mixstyle.probability:g}, alpha {mixstyle.alpha:g})")
    dir_ = augment.dir
    if dir_.enabled and dir_.folder:
        kind = "ADIR" if dir_.energy_threshold is not None else "DIR"
        found.append(
            f"{kind}: device impulse responses on devices {', '.join(dir_.devices)} "
            f"(p {dir_.probability:g})"
        )
    return ", ".join(found) or "none"


def _teachers(config, distilled):
    teachers, distillation = config.teachers, config.distillation
    if not distilled:
        return "none: the general model is the student trained on labels alone"
    sources = []
    if teachers.train_count:
        folds = f", out-of-fold logits from {teachers.folds} folds" if teachers.folds > 1 else ""
        sources.append(f"{teachers.train_count} teacher(s) trained on the same split{folds}")
    if teachers.logit_files:
        sources.append(f"{len(teachers.logit_files)} precomputed teacher logit file(s)")
    lam = f"{distillation.label_weight:g}"
    if distillation.label_weight_schedule != "constant":
        lam += f" to {distillation.label_weight_end:g} ({distillation.label_weight_schedule})"
    device_models = ""
    if config.device_models.devices:
        device_models = "; device models " + (
            "likewise" if config.device_models.distilled else "fine-tuned on labels alone"
        )
    return (
        f"from {teachers.fusion} teacher logits ({'; '.join(sources)}); temperature "
        f"{distillation.temperature:g}, label weight {lam}{device_models}"
    )


def meta_information(config, label, models, complexity, results, kind, distilled):
    """The meta-information of one system: `models` maps "general" and each device to its
    packaged file, `complexity` is `system_complexity`'s rows, `results`
    `development_results`'s dict; `distilled`: whether the general model is the distilled
    student."""
    front = config.frontend
    author, institute = label.split("_")[:2]
    architecture = (
        f"DS-FlexiNet {config.model.variant}"
        if config.model.architecture == "ds_flexinet"
        else f"CP-ResNet (width {config.model.width})"
    )
    device_models = [d for d in models if d != "general"]
    quantized = "int8 (quantization-aware training, TFLite)" if kind == "int8" else "float32"
    per_model = {
        row["model"]: {
            "parameters": int(row["params"]),
            "parameter_bytes": int(row["param_bytes"]),
            "macs": int(row["macs"]),
        }
        for row in complexity
    }
    return {
        "submission": {
            "label": label,
            "name": _ask("the system's name"),
            "abbreviation": _ask("a short name, at most 10 characters"),
            "authors": [
                {
                    "lastname": author,
                    "firstname": _ask("first name"),
                    "email": _ask("e-mail address"),
                    "corresponding": True,
                    "affiliation": {
                        "abbreviation": institute,
                        "institute": _ask("institute"),
                        "department": _ask("department"),
                        "location": _ask("city, country"),
                    },
                }
            ],
        },
        "system": {
            "description": {
                "input_sampling_rate": f"{config.data.sample_rate / 1000:g}kHz",
                "acoustic_features": (
                    f"log-mel energies ({front.n_mels} bins, {front.fmin:g}-{front.fmax:g} Hz, "
                    f"window {front.win_length}, FFT {front.n_fft}, hop {front.hop_length} "
                    "samples)"
                ),
                "embeddings": None,
                "data_augmentation": _augmentations(config),
                "machine_learning_method": f"CNN ({architecture}, {config.model.norm} norm)",
                "knowledge_distillation": _teachers(config, distilled),
                "training_split": config.data.train_split,
                "device_specific_models": (
                    f"fine-tuned copies of the general model for devices "
                    f"{', '.join(device_models)}; other devices use the general model"
                    if device_models
                    else "none: one model for every device"
                ),
                "ensemble_method_subsystem_count": 1,
                "decision_making": "argmax of the device's model's logits",
                "external_data_usage": (
                    "device impulse responses (DIR augmentation)"
                    if config.augment.dir.enabled and config.augment.dir.folder
                    else "none"
                ),
                "complexity_management": (
                    f"depthwise-separable convolutions, {quantized}"
                    + (", knowledge distillation" if distilled else "")
                ),
            },
            "complexity": {
                "total_parameters": sum(m["parameters"] for m in per_model.values()),
                "total_model_size": sum(m["parameter_bytes"] for m in per_model.values()),
                "model_size_per_model": max(m["parameter_bytes"] for m in per_model.values()),
                "macs_per_model": max(m["macs"] for m in per_model.values()),
                "quantization": quantized,
                "models": per_model,
            },
            "external_datasets": (
                [
                    {
                        "name": _ask("the impulse-response dataset's name"),
                        "url": _ask("its address"),
                        "total_audio_length": _ask("its length"),
                    }
                ]
                if config.augment.dir.enabled and config.augment.dir.folder
                else []
            ),
            "source_code": _ask("address of the system's source code"),
        },
        "results": {"development_dataset": results},
    }


def placeholders(meta, where=""):
    """The dotted keys of every placeholder left in `meta`."""
    found = []
    items = meta.items() if isinstance(meta, dict) else enumerate(meta)
    for key, value in items:
        path = f"{where}.{key}" if where else str(key)
        if isinstance(value, dict | list):
            found += placeholders(value, path)
        elif isinstance(value, str) and value.startswith(PLACEHOLDER):
            found.append(path)
    return found


def write_meta(path, meta, source):
    """Writes `meta` as YAML to `path` (atomically), with a header naming its source."""
    header = (
        f"# DCASE Task 1 system meta information, written by asc_keras from {source}.\n"
        f"# Replace every {PLACEHOLDER} value; compare the blocks with the challenge's "
        "template before submitting.\n"
    )
    text = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=100)
    atomic_write_text(path, header + text)
