"""DCASE 2025 Task 1 inference of one system packaged by asc_keras (`tools/package.py`).

This file is copied into every inference package as `_runtime.py`: it needs numpy,
soundfile, soxr and ai-edge-litert, never asc_keras. A system folder holds `system.json`
(class order, sample rate, clip length, the model file of each device), a float front end
(`frontend.tflite`: waveform -> log-mel) and one classifier per device, the `general` one
for any other device and "unknown". Audio is read as the training data were: averaged to
mono, resampled with soxr (high quality), rounded to float16 as the training cache stores
it, cropped or zero-padded to the clip length.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile
import soxr
from ai_edge_litert.interpreter import Interpreter, OpResolverType

GENERAL = "general"


def quantize(details, values):
    """Float `values` in the type of the tensor `details` describes: int8 with its scale and
    zero point (rounded, clipped), else a plain cast."""
    scale, zero = details["quantization"]
    if details["dtype"] == np.int8:
        return np.clip(np.round(values / scale + zero), -128, 127).astype(np.int8)
    return np.asarray(values).astype(details["dtype"])


def dequantize(details, values):
    """The float values of a tensor's `values` (int8: with its scale and zero point)."""
    scale, zero = details["quantization"]
    if details["dtype"] == np.int8:
        return (values.astype(np.float32) - zero) * scale
    return values.astype(np.float32)


class Model:
    """One `.tflite` file under the LiteRT interpreter (builtin kernels, no delegate):
    `model(batch)` quantises float inputs and dequantises outputs with the model's scales."""

    def __init__(self, path):
        self.path = Path(path)
        self.runner = Interpreter(
            model_path=str(self.path),
            num_threads=1,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        self.input = self.runner.get_input_details()[0]
        self.output = self.runner.get_output_details()[0]
        self.batch = int(self.input["shape"][0])
        self.resizable = int(self.input["shape_signature"][0]) == -1
        self.runner.allocate_tensors()

    def __call__(self, batch):
        batch = np.asarray(batch, np.float32)
        if not self.resizable and len(batch) != self.batch:  # a model of a fixed batch
            step = self.batch
            return np.concatenate([self(batch[i : i + step]) for i in range(0, len(batch), step)])
        if len(batch) != self.batch:
            self.runner.resize_tensor_input(self.input["index"], list(batch.shape))
            self.runner.allocate_tensors()
            self.batch = len(batch)
        self.runner.set_tensor(self.input["index"], quantize(self.input, batch))
        self.runner.invoke()
        return dequantize(self.output, self.runner.get_tensor(self.output["index"]))


class System:
    """The front end and the classifier of every device of one system folder."""

    def __init__(self, folder):
        folder = Path(folder)
        spec = json.loads((folder / "system.json").read_text())
        self.folder = folder
        self.classes = list(spec["classes"])
        self.sample_rate = int(spec["sample_rate"])
        self.samples = int(spec["samples"])
        self.frontend = Model(folder / spec["frontend"])
        self.models = {device: Model(folder / name) for device, name in spec["models"].items()}

    def model_for(self, device_id):
        return self.models.get(device_id, self.models[GENERAL])


def read_clip(path, sample_rate, samples):
    """The clip at `path` as float32 mono at `sample_rate`, `samples` long."""
    waveform, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = waveform.mean(axis=1)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32)
    mono = mono.astype(np.float16).astype(np.float32)
    if len(mono) >= samples:
        return mono[:samples]
    return np.pad(mono, (0, samples - len(mono)))


def front_end(model, waveforms):
    """(n, mels, frames, 1) log-mels of (n, samples) waveforms by the front-end `model`, one
    clip at a time: a float matrix product over a batch may round otherwise than over one
    clip, and asc_keras's tools/predict.py computes the same numbers this way."""
    waveforms = np.asarray(waveforms, np.float32)
    return np.concatenate([model(waveform[None]) for waveform in waveforms])


def log_mels(system, file_paths, workers=None):
    """(mels, frames, 1) log-mel input of each file, in order; files decoded on threads."""
    with ThreadPoolExecutor(workers) as pool:
        clips = list(
            pool.map(lambda p: read_clip(p, system.sample_rate, system.samples), file_paths)
        )
    return list(front_end(system.frontend, clips)) if clips else []


def classify(system, inputs, device_ids, batch_size=64):
    """Logits (n, classes) of log-mel `inputs`, each by the model of its device."""
    logits = np.zeros((len(inputs), len(system.classes)), np.float32)
    for model in {system.model_for(d) for d in device_ids}:
        rows = [i for i, d in enumerate(device_ids) if system.model_for(d) is model]
        for first in range(0, len(rows), batch_size):
            chunk = rows[first : first + batch_size]
            logits[chunk] = model(np.stack([inputs[i] for i in chunk]))
    return logits


def as_tensors(rows):
    """`rows` as torch tensors when torch is installed (what the challenge's evaluation
    script stacks), else as numpy arrays."""
    try:
        import torch
    except ImportError:
        return [np.asarray(row) for row in rows]
    return [torch.from_numpy(np.array(row)) for row in rows]
