"""Running a `.tflite` classifier with the LiteRT interpreter on log-mel batches."""

import numpy as np

from asc_keras.errors import UserError
from asc_keras.evaluation.report import check_model_io


def interpreter(model_bytes, reference_kernels=False, threads=1, xnnpack=False):
    """A LiteRT interpreter with its builtin op kernels. `reference_kernels` selects the plain
    reference kernels, the ones TFLite Micro's kernels are checked against; `xnnpack` adds
    the XNNPACK delegate, as LiteRT ships by default (for speed measurements)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if reference_kernels:
        resolver = OpResolverType.BUILTIN_REF
    elif xnnpack:
        resolver = OpResolverType.AUTO
    else:
        resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        runner = Interpreter(
            model_content=bytes(model_bytes),
            num_threads=threads,
            experimental_op_resolver_type=resolver,
        )
    except ValueError as error:
        raise ValueError(f"not a TFLite model: {error}") from error
    runner.allocate_tensors()
    return runner


class TFLiteClassifier:
    """Logits from a (float or int8) `.tflite` model; int8 inputs and outputs are quantised
    and dequantised with the model's own scales."""

    def __init__(
        self, model_bytes, threads=1, reference_kernels=False, source="model", xnnpack=False
    ):
        self.source = source
        try:
            self.runner = interpreter(model_bytes, reference_kernels, threads, xnnpack)
        except ValueError as error:
            raise UserError(f"{source}: {error}") from error
        self.input = self.runner.get_input_details()[0]
        self.output = self.runner.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in self.input["shape"][1:])
        self.num_classes = int(self.output["shape"][-1])
        self.batch = int(self.input["shape"][0])
        self.resizable = int(self.input["shape_signature"][0]) == -1

    def check(self, input_shape, num_classes):
        check_model_io(self.source, self.input_shape, self.num_classes, input_shape, num_classes)

    def quantize_input(self, features):
        # The inference package's arithmetic (asc_keras.submission.runtime), the same here.
        from asc_keras.submission.runtime import quantize

        return quantize(self.input, features)

    def dequantize_output(self, values):
        from asc_keras.submission.runtime import dequantize

        return dequantize(self.output, values)

    def predict(self, features):
        features = np.asarray(features, np.float32)
        if not self.resizable and len(features) != self.batch:
            return np.concatenate(
                [
                    self.predict(features[i : i + self.batch])
                    for i in range(0, len(features), self.batch)
                ]
            )
        if len(features) != self.batch:
            self.runner.resize_tensor_input(self.input["index"], [len(features), *self.input_shape])
            self.runner.allocate_tensors()
            self.batch = len(features)
        self.runner.set_tensor(self.input["index"], self.quantize_input(features))
        self.runner.invoke()
        return self.dequantize_output(self.runner.get_tensor(self.output["index"]))

    def predict_dataset(self, dataset):
        return np.concatenate([self.predict(np.asarray(x)) for x, _ in dataset])
