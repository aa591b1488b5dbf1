"""Every use of another package's private API, in one place, each guarded.

asc_keras reaches into a few internals that have no public equivalent: Keras' symbolic build
and layer walk (asc_keras.distribution), tf_keras' compiled loss and metrics containers,
tfmot's default 8-bit registry, scheme and activation quantizer (asc_keras.quantize.qat) and
LiteRT's op table (asc_keras.quantize.convert).
A release that changes one of them is one `CompatibilityError` naming the package, the
installed version and the versions asc_keras supports, instead of a deep traceback. The tested
versions are pinned in constraints.txt (`make demo` and `make test` install with it).

Nothing here imports a heavy package at load time: tfmot, in particular, is imported only by
the functions the quantization path calls (it switches its process to legacy Keras).
"""

import contextlib
import importlib
import importlib.metadata
import re

from asc_keras.errors import UserError

# The distribution names of the packages whose internals are used here.
KERAS, TFMOT, LITERT = "keras", "tensorflow-model-optimization", "ai-edge-litert"
TF_KERAS = "tf-keras"


class CompatibilityError(UserError, RuntimeError):
    """An installed package without an internal that asc_keras needs."""


def installed_version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def supported_range(package):
    """The version range asc_keras declares for `package` (pyproject.toml), e.g. '>=3.8,<3.16'."""
    try:
        requirements = importlib.metadata.requires("asc_keras") or []
    except importlib.metadata.PackageNotFoundError:
        return "see pyproject.toml"
    for requirement in requirements:
        match = re.match(r"([A-Za-z0-9_.-]+)\s*([^;]*)", requirement)
        if match and _normal(match.group(1)) == _normal(package) and "extra" not in requirement:
            return match.group(2).strip() or "any"
    return "see pyproject.toml"


def _normal(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _missing(package, what, error=None):
    detail = f" ({error})" if error else ""
    return CompatibilityError(
        f"{package} {installed_version(package) or '(not installed)'} has no {what}{detail}; "
        f"asc_keras supports {package} {supported_range(package)}: install the tested versions "
        f"with `pip install -c constraints.txt -e .` (or `make demo`)"
    )


def _attribute(owner, name, package, what):
    if not hasattr(owner, name):
        raise _missing(package, what)
    return getattr(owner, name)


# Keras ---------------------------------------------------------------------------------


def symbolic_build_once(model, element_spec):
    """Builds `model`'s metrics and loss from `element_spec` (a batch's spec) and stops
    `fit` from building them again from a first batch that it would then not train on."""
    build = _attribute(model, "_symbolic_build", KERAS, "Model._symbolic_build")
    _attribute(model, "_maybe_symbolic_build", KERAS, "Model._maybe_symbolic_build")
    build(data_batch=element_spec)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def all_layers(model):
    """Every layer inside `model`, nested ones included (not `model` itself)."""
    flatten = _attribute(model, "_flatten_layers", KERAS, "Layer._flatten_layers")
    return list(flatten(include_self=False, recursive=True))


def build_legacy_model_for_fit(model, outputs, targets):
    """tf_keras: builds a compiled `model`'s optimizer, loss and metrics from tensors shaped
    like one batch's `outputs` and `targets`, as Keras 3 does before `fit`; built in the first
    trace of the training step instead, they would make TensorFlow trace it twice."""
    _attribute(model, "compiled_loss", TF_KERAS, "Model.compiled_loss")
    _attribute(model, "compiled_metrics", TF_KERAS, "Model.compiled_metrics")
    _attribute(model.compiled_loss, "build", TF_KERAS, "LossesContainer.build")(outputs)
    _attribute(model.compiled_metrics, "build", TF_KERAS, "MetricsContainer.build")(
        outputs, targets
    )
    model.optimizer.build(model.trainable_variables)


# LiteRT --------------------------------------------------------------------------------


def op_details(interpreter):
    """LiteRT's per-op details (op_name, operand_types, result_types) of an interpreter."""
    return _attribute(interpreter, "_get_ops_details", LITERT, "Interpreter._get_ops_details")()


# tfmot (imported on the quantization path only) ----------------------------------------

_TFMOT_KERAS = "tensorflow_model_optimization.python.core.quantization.keras"


def _tfmot_module(name):
    try:
        return importlib.import_module(f"{_TFMOT_KERAS}.{name}")
    except ImportError as error:
        raise _missing(TFMOT, f"module {name}", error) from error


def tfmot_default_8bit():
    """(Default8BitQuantizeRegistry, Default8BitConvQuantizeConfig,
    Default8BitQuantizeScheme): the classes asc_keras' QAT scheme extends."""
    registry = _tfmot_module("default_8bit.default_8bit_quantize_registry")
    scheme = _tfmot_module("default_8bit.default_8bit_quantize_scheme")
    return (
        _attribute(registry, "Default8BitQuantizeRegistry", TFMOT, "Default8BitQuantizeRegistry"),
        _attribute(
            registry, "Default8BitConvQuantizeConfig", TFMOT, "Default8BitConvQuantizeConfig"
        ),
        _attribute(scheme, "Default8BitQuantizeScheme", TFMOT, "Default8BitQuantizeScheme"),
    )


@contextlib.contextmanager
def replaced_activation_quantizer(function):
    """Within the block, tfmot's activation quantizers call `function` (with
    MovingAvgQuantize's arguments) instead of quant_ops.MovingAvgQuantize."""
    quant_ops = _tfmot_module("quant_ops")
    original = _attribute(quant_ops, "MovingAvgQuantize", TFMOT, "quant_ops.MovingAvgQuantize")
    quant_ops.MovingAvgQuantize = function
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original
