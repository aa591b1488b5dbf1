"""One model on one emulated Cortex-M: outputs against LiteRT's reference kernels, instructions
per inference in total and per op, arena, flash and RAM."""

import collections
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from asc_keras.evaluation.tflite import TFLiteClassifier
from asc_keras.mcu.firmware import (
    ARENA_BYTES,
    CPUS,
    build_firmware,
    build_library,
    emulate,
    image_sizes,
)
from asc_keras.mcu.sources import find_tool


def random_inputs(classifier, count, seed=0):
    """`count` inputs of the model's input type: uniform int8, or log-mel-like floats."""
    rng = np.random.default_rng(seed)
    shape = (count, *classifier.input_shape)
    if classifier.input["dtype"] == np.int8:
        return rng.integers(-128, 128, shape, dtype=np.int8)
    return (rng.standard_normal(shape) * 3 - 5).astype(classifier.input["dtype"])


def quantized_inputs(classifier, features):
    """Log-mel features as the model's input tensors (int8 with its scale, or as they are)."""
    return np.stack([classifier.quantize_input(np.asarray(f)[None])[0] for f in features])


def reference_outputs(classifier, inputs):
    """The raw output tensor of each input with `classifier`'s kernels."""
    from asc_keras.quantize.micro import run_raw

    return np.stack([run_raw(classifier, example[None])[0].copy() for example in inputs])


def _symbol_bytes(elf, name):
    listing = subprocess.run(
        [find_tool("arm-none-eabi-nm"), "-S", str(elf)], capture_output=True, text=True
    ).stdout
    match = re.search(rf"^[0-9a-f]+ ([0-9a-f]+) \w {re.escape(name)}$", listing, re.MULTILINE)
    return int(match[1], 16) if match else 0


def measure(model_bytes, inputs, *, cpu, kernels, tflm=None, log=print, keep=None):
    """Builds, emulates and checks; returns a dict of the figures (see tools/mcu.py)."""
    classifier = TFLiteClassifier(model_bytes, reference_kernels=True)
    inputs = np.asarray(inputs, classifier.input["dtype"])
    library = build_library(tflm, cpu, kernels, log=log)
    with tempfile.TemporaryDirectory(prefix="asc-mcu-") as scratch:
        directory = Path(keep or scratch)
        elf = build_firmware(library, cpu, model_bytes, inputs, directory)
        sizes = image_sizes(elf)
        input_bytes = _symbol_bytes(elf, "asc_inputs")
        log(f"running {len(inputs)} inputs in QEMU {CPUS[cpu].machine} ({cpu}, {kernels})")
        emulation = emulate(elf, cpu)
    dtype = classifier.output["dtype"]
    device = np.stack([np.frombuffer(raw, dtype) for raw in emulation.outputs])
    reference = reference_outputs(classifier, inputs)
    difference = np.abs(device.astype(np.float64) - reference.astype(np.float64)).max(axis=1)
    per_op = collections.defaultdict(float)
    for name, count in emulation.ops:
        per_op[name] += count
    return {
        "cpu": cpu,
        "kernels": kernels,
        "machine": CPUS[cpu].machine,
        "inputs": len(inputs),
        "identical_outputs": int(np.sum(difference == 0)),
        "max_output_difference": float(difference.max()),
        "same_class": int(np.sum(device.argmax(1) == reference.argmax(1))),
        "device_classes": [int(c) for c in device.argmax(1)],
        "instructions": float(np.mean(emulation.instructions)),
        "instructions_min": float(np.min(emulation.instructions)),
        "instructions_max": float(np.max(emulation.instructions)),
        "instructions_per_op": dict(sorted(per_op.items(), key=lambda item: -item[1])),
        "ops": [list(op) for op in emulation.ops],
        "arena_bytes": emulation.arena_bytes,
        "model_bytes": len(model_bytes),
        # The image less the test inputs: what a product's firmware would hold.
        "flash_bytes": sizes["flash_bytes"] - input_bytes,
        "ram_bytes": sizes["static_ram_bytes"] - ARENA_BYTES + emulation.arena_bytes,
        "instructions_per_tick": emulation.instructions_per_tick,
    }


def latency_ms(instructions, mhz):
    """An estimate: one instruction per cycle at `mhz`."""
    return instructions / (mhz * 1e3)
