"""Parameter, MAC and int8-size counts under the DCASE low-complexity rules.

Parameters are counted as PyTorch (and the DCASE `nessi` tool) count them: weights, biases,
BatchNorm gamma and beta, ResidualNorm lambda; no BatchNorm running statistics. MACs are the
multiply-accumulates of all convolutions and dense layers for one input clip. A layer the
counter does not know is refused by name, never silently counted as free.
"""

import dataclasses
import math

import keras

from asc_keras.layers import ResidualNorm

# DCASE 2022-2025 Task 1 limits, per model (with device models, each one's).
MAX_PARAM_BYTES = 128_000
MAX_MACS = 30_000_000


@dataclasses.dataclass(frozen=True)
class Rules:
    """A challenge's complexity limits for one model: parameter memory (bytes, each
    parameter at its stored width) and multiply-accumulates for one 1-second clip."""

    title: str
    max_param_bytes: int
    max_macs: int

    def check(self, param_bytes, macs):
        """The broken limits, as phrases (empty: within them)."""
        broken = []
        if param_bytes > self.max_param_bytes:
            broken.append(f"{param_bytes} parameter bytes > {self.max_param_bytes}")
        if macs > self.max_macs:
            broken.append(f"{macs / 1e6:.2f} M MACs > {self.max_macs / 1e6:g} M")
        return broken


RULES = {
    "dcase2025": Rules("DCASE 2025 Task 1", MAX_PARAM_BYTES, MAX_MACS),
    "dcase2022-2024": Rules("DCASE 2022-2024 Task 1", MAX_PARAM_BYTES, MAX_MACS),
}

# Layers without weights that do no multiply-accumulate work under the DCASE rules.
_FREE_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.ReLU,
    keras.layers.Activation,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.AveragePooling2D,
    keras.layers.MaxPooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Permute,
    keras.layers.Add,
    keras.layers.Multiply,
    keras.layers.Concatenate,
    keras.layers.Rescaling,
    keras.layers.Softmax,
    keras.layers.Identity,
)
_NORMALIZATIONS = (keras.layers.BatchNormalization, keras.layers.LayerNormalization)
_KERNEL_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Dense,
)


@dataclasses.dataclass
class LayerCount:
    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int


@dataclasses.dataclass
class Complexity:
    params: int
    macs: int
    layers: list
    bytes_per_param: int = 1

    @property
    def param_bytes(self):
        return self.params * self.bytes_per_param

    @property
    def within_limits(self):
        return self.param_bytes <= MAX_PARAM_BYTES and self.macs <= MAX_MACS

    def as_dict(self):
        return {
            "params": self.params,
            "macs": self.macs,
            "param_bytes": self.param_bytes,
            "max_param_bytes": MAX_PARAM_BYTES,
            "max_macs": MAX_MACS,
            "within_limits": self.within_limits,
        }


def _size(variable):
    return math.prod(variable.shape)


def _spatial_positions(shape):
    dims = shape[1:-1]
    if any(d is None for d in dims):
        raise ValueError(
            f"cannot count MACs for an output of unknown size {tuple(shape)}; "
            f"build the model with a fixed input shape"
        )
    return math.prod(dims)


def _count_layer(layer, input_shape, rows, prefix=""):
    """Appends the rows of `layer` (recursing into composite layers); returns its output shape."""
    name = prefix + layer.name
    if hasattr(layer, "sequential_paths"):
        for path in layer.sequential_paths():
            shape = input_shape
            for sublayer in path:
                shape = _count_layer(sublayer, shape, rows, prefix=name + "/")
        return layer.compute_output_shape(input_shape)
    if isinstance(layer, keras.Model):
        inner = count_model(layer)
        rows += [dataclasses.replace(r, name=f"{name}/{r.name}") for r in inner.layers]
        return layer.compute_output_shape(input_shape)

    output_shape = tuple(layer.compute_output_shape(input_shape))
    if isinstance(layer, _KERNEL_LAYERS):
        params = sum(_size(w) for w in layer.weights)
        if isinstance(layer, keras.layers.Dense):
            positions = _spatial_positions(input_shape) if len(input_shape) > 2 else 1
        else:
            positions = _spatial_positions(output_shape)
        macs = positions * _size(layer.kernel)
    elif isinstance(layer, keras.layers.SeparableConv2D):
        params = sum(_size(w) for w in layer.weights)
        positions = _spatial_positions(output_shape)
        macs = positions * (_size(layer.depthwise_kernel) + _size(layer.pointwise_kernel))
    elif isinstance(layer, (*_NORMALIZATIONS, ResidualNorm)):
        params = sum(_size(w) for w in layer.trainable_weights)
        macs = 0
    elif isinstance(layer, _FREE_LAYERS) and not layer.weights:
        params = macs = 0
    else:
        raise ValueError(
            f"cannot count the complexity of layer {name!r} of type {type(layer).__name__}: "
            f"teach asc_keras.complexity how to count it rather than skipping it"
        )
    rows.append(LayerCount(name, type(layer).__name__, output_shape, params, macs))
    return output_shape


def count_model(model):
    """Counts parameters and MACs of a built Keras model for one input example."""
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built; call it or build it first")
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            inputs = layer.input
        except (AttributeError, ValueError) as error:
            raise ValueError(
                f"cannot count layer {layer.name!r}: it has no single input "
                f"(shared layers are not supported)"
            ) from error
        if isinstance(inputs, (list, tuple)):
            input_shape = [tuple(tensor.shape) for tensor in inputs]
        else:
            input_shape = tuple(inputs.shape)
        _count_layer(layer, input_shape, rows)
    return Complexity(
        params=sum(r.params for r in rows), macs=sum(r.macs for r in rows), layers=rows
    )


def variant_report(variants=None, norm="residual"):
    """Counts each DS-FlexiNet variant and compares it with paper Table II."""
    from asc_keras.models.ds_flexinet import PAPER_COMPLEXITY, VARIANTS, ds_flexinet

    rows = []
    for variant in variants or sorted(VARIANTS):
        counted = count_model(ds_flexinet(variant, norm=norm))
        paper = PAPER_COMPLEXITY[variant]
        rows.append(
            {
                "variant": variant,
                **counted.as_dict(),
                "paper_params": paper["params"],
                "paper_macs": paper["macs"],
                "params_ratio": counted.params / paper["params"],
                "macs_ratio": counted.macs / paper["macs"],
            }
        )
    return rows


def folded_param_count(complexity):
    """The parameter count after conversion folds each BatchNorm that follows a convolution
    into it (gamma and beta, 2C, become a bias, C): what `count_tflite` finds in the
    converted model."""
    params = complexity.params
    previous = None
    for row in complexity.layers:
        if row.kind == "BatchNormalization" and previous in ("Conv2D", "DepthwiseConv2D"):
            params -= row.params // 2
        previous = row.kind
    return params


# Ops whose constant operands are parameters: weights and biases of the multiply-accumulate
# ops, MUL factors (ResidualNorm lambda, BatchNorm scales) and per-channel ADD offsets
# (BatchNorms that follow no convolution). Fixed numbers rather than parameters: a scalar ADD
# constant (ResidualNorm's epsilon, or lambda, which its MUL counts) and the scalar MUL
# constant that turns ResidualNorm's sum of squares (a BATCH_MATMUL) into the variance.
_PARAMETER_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MUL", "ADD")


def _op_code(model, op):
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _sum_of_squares(model, made_by, index):
    """Whether tensor `index` is a BATCH_MATMUL's result (through RESHAPEs)."""
    from tensorflow.lite.python import schema_py_generated as schema

    op = made_by.get(index)
    while op is not None and _op_code(model, op) == schema.BuiltinOperator.RESHAPE:
        op = made_by.get(op.inputs[0])
    return op is not None and _op_code(model, op) == schema.BuiltinOperator.BATCH_MATMUL


def count_tflite(model_bytes):
    """Parameters and parameter bytes of a `.tflite` model, from its constant tensors."""
    from tensorflow.lite.python import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytes(model_bytes), 0))
    except Exception as error:  # the flatbuffer reader raises assorted errors on garbage
        raise ValueError(f"not a TFLite model: {error}") from error
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    sizes = {
        schema.TensorType.INT8: 1,
        schema.TensorType.INT32: 4,
        schema.TensorType.FLOAT32: 4,
        schema.TensorType.INT16: 2,
    }
    params = param_bytes = 0
    seen = set()
    for graph in model.subgraphs:
        made_by = {out: op for op in graph.operators for out in op.outputs}
        for op in graph.operators:
            name = names.get(_op_code(model, op))
            if name not in _PARAMETER_OPS:
                continue
            for index in op.inputs:
                tensor = graph.tensors[index] if index >= 0 else None
                if tensor is None or index in seen or model.buffers[tensor.buffer].data is None:
                    continue
                seen.add(index)
                count = int(math.prod(tensor.shape)) if tensor.shape is not None else 1
                if count == 1 and (
                    name == "ADD" or any(_sum_of_squares(model, made_by, i) for i in op.inputs)
                ):
                    continue
                params += count
                param_bytes += count * sizes.get(tensor.type, 4)
    return {"params": params, "param_bytes": param_bytes, "file_bytes": len(model_bytes)}


def system_complexity(run_dir, kind="int8", rules=RULES["dcase2025"]):
    """One row per model of a run folder's system (the general model, then each device
    model): its file, parameters and parameter bytes (int8: the `.tflite` file's constant
    tensors, int8 weights and int32 biases; float: 4 bytes per parameter), MACs (from its
    float stage) and the limits of `rules` it breaks."""
    from asc_keras.cli import load_keras, read_tflite
    from asc_keras.inference import system_paths

    float_paths = system_paths(run_dir, "float")
    paths = system_paths(run_dir, kind) if kind == "int8" else float_paths
    rows = []
    for name, path in paths.items():
        counted = count_model(load_keras(float_paths[name]))
        if kind == "int8":
            stored = count_tflite(read_tflite(path))
            params, param_bytes = stored["params"], stored["param_bytes"]
        else:
            params, param_bytes = counted.params, 4 * counted.params
        broken = rules.check(param_bytes, counted.macs)
        rows.append(
            {
                "model": name,
                "file": str(path),
                "params": params,
                "param_bytes": param_bytes,
                "macs": counted.macs,
                "within_limits": not broken,
                "broken": broken,
            }
        )
    return rows
