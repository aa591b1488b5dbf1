"""Classify any audio with a trained model, in the shape of the DCASE 2025 Task 1 interface.

    models = load_model("runs/sm2/quantized/model_int8.tflite")     # config from the run folder
    predictions, errors, classes = predict(["rec.flac"], ["unknown"], models)
    predictions[0].probabilities                                     # in the order of `classes`

A model is a `.keras` student (log-mel in, or waveform in: `asc_keras.with_frontend`) or a
`.tflite` model (float or int8, run by LiteRT). Audio in any format soundfile reads, at any
sample rate and channel count, is downmixed and resampled as the training data were. A clip
longer than the model's input is cut into windows (`hop` seconds apart, the last one ending
at the clip's end) whose class probabilities are averaged; a shorter one is zero-padded.
Device-specific models (allowed by the DCASE 2025 rules) are a mapping from device id to
model file; a device without its own model, or "unknown", gets the general one.
"""

import dataclasses
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from asc_keras.audio import LogMel, feature_shape, load_audio
from asc_keras.audio.io import AudioError, fix_length
from asc_keras.cli import load_keras, read_tflite
from asc_keras.config import load_config
from asc_keras.data.cache import STORED
from asc_keras.data.tau22 import CLASSES, DEVICES
from asc_keras.errors import UserError
from asc_keras.run_folder import device_stage, quantized_folder

GENERAL = "general"  # the key of the model for every device without its own


def config_of(model_path, config=None):
    """The config a model was trained with: `config` (a path or a Config), else the
    `config.yaml` of the run folder the model lies in (its folder or one of the three above:
    RUN/device-models/DEVICE/quantized/)."""
    if config is not None:
        return load_config(config) if isinstance(config, (str, Path)) else config
    for folder in Path(model_path).resolve().parents[:4]:
        if (folder / "config.yaml").is_file():
            return load_config(folder / "config.yaml")
    raise UserError(
        f"no config.yaml in the run folder of {model_path}: pass the config the model was "
        f"trained with (--config)"
    )


class Classifier:
    """One model file and the front end it needs; `probabilities(windows)` of waveforms."""

    def __init__(self, path, config=None, batch_size=64, front_end=None):
        self.path = Path(path)
        self.config = config_of(path, config)
        self.sample_rate = self.config.data.sample_rate
        self.samples = int(round(self.sample_rate * self.config.data.duration))
        self.batch_size = batch_size
        if not self.path.is_file():
            raise UserError(f"model file {str(self.path)!r} does not exist")
        suffix = self.path.suffix
        if suffix == ".tflite":
            from asc_keras.evaluation.tflite import TFLiteClassifier

            self.model = TFLiteClassifier(read_tflite(self.path), source=str(self.path))
            shape, self._run = self.model.input_shape, self.model.predict
        elif suffix == ".keras":
            self.model = load_keras(self.path)
            shape = tuple(self.model.input_shape[1:])
            self._run = lambda x: np.asarray(self.model.predict_on_batch(x))
        else:
            raise UserError(f"{self.path}: expected a .keras or .tflite model, not {suffix!r}")
        self.waveform_in = shape == (self.samples,)
        expected = feature_shape(self.config)
        if not self.waveform_in and tuple(shape) != expected:
            raise UserError(
                f"{self.path} takes inputs {tuple(shape)}; its config gives log-mel "
                f"{expected} (frontend.n_mels, frames of {self.samples} samples) or "
                f"waveforms ({self.samples},): pass the config it was trained with"
            )
        if self.waveform_in:
            self.front_end = None
        elif front_end is not None:
            self.front_end = front_end
        else:
            log_mel = LogMel(self.config.frontend, self.sample_rate)
            self.front_end = lambda batch: np.asarray(log_mel(batch))[..., None]

    def probabilities(self, windows):
        """(n, samples) waveforms -> (n, classes) class probabilities."""
        out = []
        for i in range(0, len(windows), self.batch_size):
            batch = np.asarray(windows[i : i + self.batch_size], np.float32)
            if self.front_end is not None:
                batch = self.front_end(batch)
            out.append(softmax(self._run(batch)))
        return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def softmax(logits):
    logits = np.asarray(logits, np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def system_paths(run_dir, kind="int8"):
    """{"general" or device id: model file} of a finished run folder: its general student and
    the device models of its config (device_models.devices), int8 (`quantized/
    model_int8.tflite`) or float (`last.keras`, the stage that became int8)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir}: not a run folder (no config.yaml)")
    devices = load_config(run_dir / "config.yaml").device_models.devices
    if kind == "int8":
        paths = {GENERAL: quantized_folder(run_dir) / "model_int8.tflite"}
        paths |= {d: quantized_folder(run_dir, d) / "model_int8.tflite" for d in devices}
    elif kind == "float":
        summary = run_dir / "summary.json"
        found = json.loads(summary.read_text()) if summary.is_file() else {}
        # The stage the device models start from, else the one that became int8.
        if "device_models" in found:
            general = found["device_models"]["general"]
        else:
            general = found.get("quantized_student", {}).get("stage", "student")
        paths = {GENERAL: run_dir / general / "last.keras"}
        paths |= {d: run_dir / device_stage(d) / "last.keras" for d in devices}
    else:
        raise ValueError(f"kind must be 'int8' or 'float', not {kind!r}")
    missing = [str(p.relative_to(run_dir)) for p in paths.values() if not p.is_file()]
    if missing:
        raise UserError(
            f"{run_dir}: no {kind} model {', '.join(missing)}: the run has not finished "
            f"those stages (rerun it with --resume)"
            + (" or does not quantize (pass --float)" if kind == "int8" else "")
        )
    return paths


def frontend_tflite(config):
    """The front end of `config` (waveform -> log-mel, float) as TFLite bytes."""
    import keras
    import tensorflow as tf

    from asc_keras.layers import LogMelSpectrogram

    samples = int(round(config.data.sample_rate * config.data.duration))
    waveform = keras.Input((samples,))
    layer = LogMelSpectrogram.from_frontend(config.frontend, config.data.sample_rate)
    model = keras.Model(waveform, layer(waveform))

    @tf.function(input_signature=[tf.TensorSpec([None, samples], tf.float32)])
    def frontend(batch):
        return model(batch)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [frontend.get_concrete_function()], model
    )
    return converter.convert()


def system_front_end(run_dir):
    """The front end of a run folder's system as its inference package runs it: the float
    TFLite model `RUN/frontend.tflite` (converted from the run's config on first use) in
    LiteRT, one clip at a time (asc_keras.submission.runtime). A run folder then classifies
    exactly as its package does."""
    from asc_keras.submission.runtime import Model, front_end
    from asc_keras.utils import atomic_write_bytes

    path = Path(run_dir) / "frontend.tflite"
    if not path.is_file():
        atomic_write_bytes(path, frontend_tflite(load_config(Path(run_dir) / "config.yaml")))
    model = Model(path)
    return lambda batch: front_end(model, batch)


def load_model(model_file_path, config=None, batch_size=64, kind="int8"):
    """{device id or "general": Classifier}. `model_file_path` is one model file (every
    device), a mapping from device id to file with a "general" entry for the others, or a
    run folder: its general model and device models (`system_paths`, `kind` int8 or
    float)."""
    if isinstance(model_file_path, dict):
        paths = dict(model_file_path)
    elif Path(model_file_path).is_dir():
        run_dir = Path(model_file_path)
        paths = system_paths(run_dir, kind)
        front_end = system_front_end(run_dir)
        return {
            device: Classifier(path, run_dir / "config.yaml", batch_size, front_end)
            for device, path in paths.items()
        }
    else:
        paths = {GENERAL: model_file_path}
    if GENERAL not in paths:
        raise UserError(f"device models {sorted(paths)} need a {GENERAL!r} model for the rest")
    return {device: Classifier(path, config, batch_size) for device, path in paths.items()}


def get_model_for_device(models, device_id):
    """The model of `device_id`; the general one for a device without its own or unknown."""
    return models.get(device_id, models[GENERAL])


def device_of(filename):
    """The device id in a TAU22-style file name (`...-<device>.wav`), else "unknown"."""
    last = Path(filename).stem.rsplit("-", 1)[-1]
    return last if last in DEVICES else "unknown"


def windows_of(waveform, samples, hop):
    """Windows of `samples` every `hop` samples, the last one ending at the clip's end. A clip
    shorter than a window is zero-padded to one, and one at most 1 % longer (a 1 s clip that
    resampling left a sample long) is cropped to one, as training does."""
    if len(waveform) <= samples + samples // 100:
        return fix_length(waveform, samples)[None]
    starts = list(range(0, len(waveform) - samples + 1, hop))
    if starts[-1] + samples < len(waveform):
        starts.append(len(waveform) - samples)
    return np.stack([waveform[s : s + samples] for s in starts])


@dataclasses.dataclass
class Prediction:
    path: str
    device: str
    probabilities: np.ndarray  # (classes,), the mean over windows
    windows: np.ndarray  # (windows, classes)
    name: str = ""  # how to report it (default: the path)

    def __post_init__(self):
        self.name = self.name or self.path


def load_inputs(file_paths, model, hop=None, workers=None):
    """Each file as (windows, samples) waveforms for `model` (a `Classifier`, or the mapping
    of `load_model`), or the `AudioError` that stopped it, in input order. Files are decoded
    and resampled on `workers` threads (default: every core)."""
    some = next(iter(model.values())) if isinstance(model, dict) else model
    hop = int(round((hop or some.config.data.duration) * some.sample_rate))
    if hop < 1:
        raise UserError(f"hop must be positive; got {hop} samples")

    def load(path):
        try:
            waveform = load_audio(path, some.sample_rate, duration=None)
            # Rounded as the training cache stores audio: the model sees what it was trained
            # and evaluated on, and predicts each clip of a split as tools/evaluate.py does.
            waveform = waveform.astype(STORED).astype(np.float32)
            return windows_of(waveform, some.samples, hop)
        except AudioError as error:
            return error

    with ThreadPoolExecutor(workers or os.cpu_count()) as pool:  # soundfile and soxr free the GIL
        return list(pool.map(load, file_paths))


def predict(file_paths, device_ids, models, hop=None, progress=None, chunk=256):
    """Classifies every file with the model of its device, `chunk` files at a time (decoded
    in parallel, each model's windows in batches). Returns (predictions, errors, class
    order): a `Prediction` per readable file and a (path, reason) per unreadable one, each in
    input order."""
    if len(device_ids) != len(file_paths):
        raise ValueError(f"{len(file_paths)} files but {len(device_ids)} device ids")
    predictions, errors = [], []
    for first in range(0, len(file_paths), chunk):
        paths = file_paths[first : first + chunk]
        devices = device_ids[first : first + chunk]
        inputs = load_inputs(paths, models, hop)
        readable = [i for i, x in enumerate(inputs) if not isinstance(x, Exception)]
        scores = {}
        for device in {get_model_for_device(models, devices[i]) for i in readable}:
            mine = [i for i in readable if get_model_for_device(models, devices[i]) is device]
            counts = [len(inputs[i]) for i in mine]
            out = device.probabilities(np.concatenate([inputs[i] for i in mine]))
            scores |= dict(zip(mine, np.split(out, np.cumsum(counts)[:-1])))
        for i, (path, device) in enumerate(zip(paths, devices)):
            if i in scores:
                windows = scores[i]
                predictions.append(Prediction(str(path), device, windows.mean(axis=0), windows))
            else:
                errors.append((str(path), str(inputs[i])))
        if progress is not None:
            progress.update(len(paths))
    return predictions, errors, list(CLASSES)
