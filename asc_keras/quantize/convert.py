"""TFLite conversion (float, post-training int8, QAT int8) and the all-int8 check."""

import warnings

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from asc_keras.compat import op_details
from asc_keras.errors import UserError
from asc_keras.evaluation.tflite import interpreter

# Tensor types an int8 model may carry: int8 activations and weights, int32 biases and
# shape / axis operands.
INTEGER_TYPES = (np.int8, np.int32, np.int64)


class NotInt8Error(UserError, ValueError):
    """A converted model that still computes in floating point."""


def convert(model, representative=None, int8=True):
    """Converts a tf_keras model for one clip at a time (batch 1, the microcontroller case: a
    fixed shape needs no run-time shape arithmetic). With `int8`, every op is int8
    (TFLITE_BUILTINS_INT8), with int8 input and output, calibrated on `representative` (an
    iterable of input batches)."""
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    # Not the default detour through a temporary SavedModel: the same model, much slower;
    # the signature it would add is added below.
    converter.experimental_lower_to_saved_model = False
    if int8:
        if representative is None:
            raise ValueError("int8 conversion needs representative input batches")
        batches = list(representative)

        def samples():
            for batch in batches:
                for example in np.asarray(batch, np.float32):
                    yield [example[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # The direct path asks for input statistics that the representative dataset has
        # already given (the int8 input's scale comes from it; the models are the same).
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
        model_bytes = converter.convert()
    return with_serving_signature(model_bytes)


def with_serving_signature(model_bytes):
    """`model_bytes` with the signature a SavedModel conversion writes (serving_default:
    input x, output output_0), for LiteRT's `get_signature_runner()`."""
    model = flatbuffer_utils.read_model_from_bytearray(model_bytes)
    graph = model.subgraphs[0]

    def tensor(name, index):
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, int(index)
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey = "serving_default"
    signature.subgraphIndex = 0
    signature.inputs = [tensor("x", graph.inputs[0])]
    signature.outputs = [tensor("output_0", graph.outputs[0])]
    model.signatureDefs = [signature]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def op_table(model_bytes):
    """(op name, operand types, result types) for every op of the model."""
    runner = interpreter(model_bytes, reference_kernels=True)
    return [
        (
            op["op_name"],
            [np.dtype(t) for t in op["operand_types"]],
            [np.dtype(t) for t in op["result_types"]],
        )
        for op in op_details(runner)
    ]


def check_int8(model_bytes, name="model"):
    """Raises `NotInt8Error` listing every op that reads or writes a floating-point tensor;
    returns the sorted op names."""
    ops = op_table(model_bytes)
    floating = [
        f"{op} ({', '.join(str(t) for t in operands)} -> {', '.join(str(t) for t in results)})"
        for op, operands, results in ops
        if any(t.type not in INTEGER_TYPES for t in operands + results)
    ]
    if floating:
        raise NotInt8Error(
            f"{name} computes in floating point in {len(floating)} op(s): "
            + "; ".join(floating[:8])
        )
    return sorted({op for op, _, _ in ops})
