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

    Returns a dict with the arena bytes, the model bytes, the number of inputs, how many
    int8 outputs differ (0 means identical), and on how many inputs TFLite Micro's class and
    the reference kernels' class equal the class of the model as the accuracy is reported
    (LiteRT's builtin kernels, `TFLiteClassifier`).
    """
    from tflite_micro.python.tflite_micro import runtime

    micro = runtime.Interpreter.from_bytes(bytes(model_bytes))
    reference = TFLiteClassifier(model_bytes, reference_kernels=True)
    reported = TFLiteClassifier(model_bytes)
    if reference.input["dtype"] != np.int8:
        raise ValueError("TFLite Micro check needs an int8 model")
    mismatched, max_difference, micro_same, reference_same = 0, 0, 0, 0
    for example in np.asarray(inputs, np.float32):
        quantized = reference.quantize_input(example[None])
        micro.set_input(quantized, 0)
        micro.invoke()
        micro_out = micro.get_output(0)
        reference_out = run_raw(reference, quantized)
        reported_class = int(np.argmax(run_raw(reported, quantized)))
        difference = int(np.abs(micro_out.astype(int) - reference_out.astype(int)).max())
        mismatched += difference > 0
        max_difference = max(max_difference, difference)
        micro_same += int(np.argmax(micro_out)) == reported_class
        reference_same += int(np.argmax(reference_out)) == reported_class
    report = _captured_stderr(micro.print_allocations)
    return {
        "inputs": len(inputs),
        "mismatched_outputs": int(mismatched),
        "max_int8_difference": max_difference,
        "micro_same_class_as_reported": micro_same,
        "reference_same_class_as_reported": reference_same,
        "arena_bytes": arena_bytes(report),
        "model_bytes": len(model_bytes),
    }


def run_raw(classifier, tensor):
    """The raw output tensor of one input tensor."""
    classifier.runner.set_tensor(classifier.input["index"], tensor)
    classifier.runner.invoke()
    return classifier.runner.get_tensor(classifier.output["index"])


def cortex_m4_figures(model_bytes, inputs, tflm=None):
    """The int8 model on an emulated Cortex-M4 with CMSIS-NN (asc_keras.mcu): instructions per
    inference, arena, flash, outputs against LiteRT's reference kernels and classes against
    the reported model. Where the Arm toolchain, QEMU or TFLite Micro's sources are missing,
    or the build fails, {"measured": False, "why": ...}: the stage goes on without them."""
    from asc_keras.mcu.firmware import FirmwareError
    from asc_keras.mcu.measure import measure, quantized_inputs
    from asc_keras.mcu.sources import SourcesError, require_emulator

    try:
        require_emulator(tflm)
        reported = TFLiteClassifier(model_bytes)
        tensors = quantized_inputs(reported, inputs)
        result = measure(model_bytes, tensors, cpu="cortex-m4", kernels="cmsis-nn", tflm=tflm)
    except (SourcesError, FirmwareError) as error:
        return {"measured": False, "why": str(error).splitlines()[0]}
    classes = [int(np.argmax(run_raw(reported, tensor[None]))) for tensor in tensors]
    same = int(np.sum(np.asarray(result["device_classes"]) == classes))
    keys = ("instructions", "arena_bytes", "flash_bytes", "ram_bytes", "identical_outputs")
    return {
        "measured": True,
        "cpu": "cortex-m4",
        "kernels": "cmsis-nn",
        "inputs": result["inputs"],
        **{key: result[key] for key in keys},
        "same_class_as_reported": same,
        "instructions_per_op": result["instructions_per_op"],
    }
