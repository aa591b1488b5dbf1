"""TFLite Micro: run an int8 model with the microcontroller kernels and measure its arena."""

import os
import re
import tempfile

import numpy as np

from asc_keras.evaluation.tflite import TFLiteClassifier


def _captured_stderr(function):
    """What a C++ call prints on file descriptor 2 (print_allocations writes there)."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            function()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        return capture.read().decode(errors="replace")


def arena_bytes(allocations_text):
    total = re.search(r"Arena allocation total (\d+) bytes", allocations_text)
    if total:
        return int(total.group(1))
    head = re.search(r"Arena allocation head (\d+) bytes", allocations_text)
    tail = re.search(r"Arena allocation tail (\d+) bytes", allocations_text)
    if not (head and tail):
        raise RuntimeError(f"no arena size in TFLite Micro's report: {allocations_text[:300]!r}")
    return int(head.group(1)) + int(tail.group(1))


def check_micro(model_bytes, inputs):
    """Runs every input through TFLite Micro and LiteRT's reference kernels.

    Returns a dict with the arena bytes, the model bytes, the number of inputs, and how many
    int8 outputs differ (0 means identical).
    """
    from tflite_micro.python.tflite_micro import runtime

    micro = runtime.Interpreter.from_bytes(bytes(model_bytes))
    reference = TFLiteClassifier(model_bytes, reference_kernels=True)
    if reference.input["dtype"] != np.int8:
        raise ValueError("TFLite Micro check needs an int8 model")
    mismatched, max_difference = 0, 0
    for example in np.asarray(inputs, np.float32):
        quantized = reference.quantize_input(example[None])
        micro.set_input(quantized, 0)
        micro.invoke()
        micro_out = micro.get_output(0)
        reference.runner.set_tensor(reference.input["index"], quantized)
        reference.runner.invoke()
        reference_out = reference.runner.get_tensor(reference.output["index"])
        difference = int(np.abs(micro_out.astype(int) - reference_out.astype(int)).max())
        mismatched += difference > 0
        max_difference = max(max_difference, difference)
    report = _captured_stderr(micro.print_allocations)
    return {
        "inputs": len(inputs),
        "mismatched_outputs": int(mismatched),
        "max_int8_difference": max_difference,
        "arena_bytes": arena_bytes(report),
        "model_bytes": len(model_bytes),
    }
