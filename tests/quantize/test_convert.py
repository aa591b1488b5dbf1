import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from asc_keras import ds_flexinet
from asc_keras.compat import op_details
from asc_keras.evaluation.tflite import interpreter
from asc_keras.quantize.convert import NotInt8Error, check_int8, convert, op_table
from asc_keras.quantize.twin import build_twin


def map_ops(model_bytes):
    """(op name, operand shapes) of every op that reads a map (rank 4, more than one position
    and more than one channel; the converter may lay a per-channel vector out as (1, C, 1, 1))."""
    runner = interpreter(model_bytes)
    shapes = {t["index"]: tuple(t["shape"]) for t in runner.get_tensor_details()}
    for op in op_details(runner):
        operands = [shapes[i] for i in op["inputs"] if i >= 0]
        if any(len(s) == 4 and s[1] * s[2] > 1 and s[3] > 1 for s in operands):
            yield op["op_name"], operands


def test_int8_conversion_passes_the_check_and_float_is_refused():
    twin = build_twin(ds_flexinet("sm1"))
    batch = np.random.default_rng(0).normal(-4, 3, (8, 256, 64, 1)).astype(np.float32)
    int8 = convert(twin, [batch])
    ops = check_int8(int8, "post-training int8 sm1")
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RSQRT"} <= set(ops)
    # Each ResidualNorm's sum of squares is one BATCH_MATMUL (a range of its own); every mean
    # is an average pool, which CMSIS-NN runs on a Cortex-M.
    norms = sum(type(layer).__name__ == "TwinResidualNorm" for layer in twin.layers)
    assert norms > 0 and [op for op, _, _ in op_table(int8)].count("BATCH_MATMUL") == norms
    assert "MEAN" not in ops
    # No elementwise op broadcasts a vector over a map, and no SUB runs on one: a Cortex-M
    # runs those with TFLite Micro's reference kernels, the rest with CMSIS-NN.
    for op, shapes in map_ops(int8):
        if op in ("ADD", "MUL", "SUB"):
            assert op != "SUB" and len(set(shapes)) == 1, (op, shapes)
    assert "FULLY_CONNECTED" not in ops  # the head converts as a 1x1 convolution
    # Converted straight from the frozen function, with the signature a SavedModel gives:
    # LiteRT's signature runner and plain invoke() agree.
    runner = Interpreter(model_content=int8)
    assert runner.get_signature_list() == {
        "serving_default": {"inputs": ["x"], "outputs": ["output_0"]}
    }
    clip = np.random.default_rng(1).integers(-128, 128, (1, 256, 64, 1), dtype=np.int8)
    signed = runner.get_signature_runner()(x=clip)["output_0"]
    runner.allocate_tensors()
    runner.set_tensor(runner.get_input_details()[0]["index"], clip)
    runner.invoke()
    np.testing.assert_array_equal(
        signed, runner.get_tensor(runner.get_output_details()[0]["index"])
    )
    with pytest.raises(NotInt8Error, match=r"float sm1 computes in floating point in \d+ op"):
        check_int8(convert(twin, int8=False), "float sm1")
    with pytest.raises(ValueError, match="representative"):
        convert(twin)
