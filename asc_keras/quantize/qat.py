"""Quantization-aware training with tensorflow-model-optimization: the only tfmot import.

Importing tfmot sets TF_USE_LEGACY_KERAS=1 for the whole process, so nothing imports this
module at load time: the training tool runs it in a subprocess (`asc_keras.quantize.stage`).
Weights are quantised per channel (symmetric) and activations per tensor (affine), as with
PyTorch's fbgemm observer the paper used. ResidualNorm's output (and a stage BatchNorm's)
is quantised through `OutputQuantizeConfig`, and its inner tensors by `QatResidualNorm`.
"""

import contextlib
import json
from pathlib import Path

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from asc_keras.compat import (
    build_legacy_model_for_fit,
    replaced_activation_quantizer,
    tfmot_default_8bit,
)
from asc_keras.distill.distiller import distillation_loss
from asc_keras.errors import UserError
from asc_keras.quantize.twin import TwinResidualNorm
from asc_keras.utils import atomic_write_text, disk_full_is_an_error

quantize_keras = tfmot.quantization.keras
Default8BitQuantizeRegistry, Default8BitConvQuantizeConfig, Default8BitQuantizeScheme = (
    tfmot_default_8bit()
)


def _activation_quantizer():
    return quantize_keras.quantizers.MovingAverageQuantizer(
        num_bits=8, per_axis=False, symmetric=False, narrow_range=False
    )


class OutputQuantizeConfig(quantize_keras.QuantizeConfig):
    """Fake-quantises a layer's output only (per tensor, affine). For ResidualNorm (its
    lambda becomes an int8 MUL) and for a BatchNormalization that follows no convolution
    (a stage normalisation; the converter makes it an int8 MUL and ADD)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_activation_quantizer()]

    def get_config(self):
        return {}


class DepthwiseWeightsQuantizer(quantize_keras.quantizers.LastValueQuantizer):
    """Per-channel symmetric int8 for a DepthwiseConv2D kernel (kh, kw, channels, 1).

    tfmot's default takes one range per index of the kernel's last axis, the depth
    multiplier (1 here), so QAT would train depthwise kernels quantised per tensor while
    the converter writes them per channel. This quantizer takes one range per channel, as
    TFLite's DEPTHWISE_CONV_2D (and the paper's fbgemm observer) does.
    """

    def __init__(self):
        super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

    def build(self, tensor_shape, name, layer):
        channels = (int(tensor_shape[-2] * tensor_shape[-1]),)
        return {
            f"{end}_var": layer.add_weight(
                f"{name}_{end}",
                shape=channels,
                initializer=tf_keras.initializers.Constant(value),
                trainable=False,
            )
            for end, value in (("min", -6.0), ("max", 6.0))
        }

    def __call__(self, inputs, training, weights, **kwargs):
        rows, columns = inputs.shape[0], inputs.shape[1]
        per_channel = tf.reshape(inputs, (rows, columns, 1, -1))
        quantized = super().__call__(per_channel, training, weights, **kwargs)
        return tf.reshape(quantized, inputs.shape)


class DepthwiseQuantizeConfig(Default8BitConvQuantizeConfig):
    """tfmot's DepthwiseConv2D config with per-channel kernel ranges."""

    def __init__(
        self, weight_attrs=("depthwise_kernel",), activation_attrs=("activation",), **kwargs
    ):
        super().__init__(
            list(weight_attrs), list(activation_attrs), kwargs.get("quantize_output", False)
        )
        self.weight_quantizer = DepthwiseWeightsQuantizer()


class _Registry(Default8BitQuantizeRegistry):
    def get_quantize_config(self, layer):
        if isinstance(layer, tf_keras.layers.DepthwiseConv2D):
            return DepthwiseQuantizeConfig()
        return super().get_quantize_config(layer)


class QuantizeScheme(Default8BitQuantizeScheme):
    """tfmot's default 8-bit scheme with per-channel depthwise kernels."""

    def get_quantize_registry(self):
        return _Registry()


# ResidualNorm's inner tensors whose calibrated range leaves outliers out (see `calibrate`);
# QAT keeps those ranges.
OUTLIER_RANGES = ("rsqrt", "gain")


class QatResidualNorm(TwinResidualNorm):
    """TwinResidualNorm with a fake quantizer (per tensor, affine) on each inner tensor.

    The int8 TFLite model stores -mean, x - mean, the sum of its squares, the variance, its
    reciprocal square root r, r + lambda, lambda * mean and (x - mean) * (r + lambda) each in
    int8 with a range of its own (and the mean too where it is not an average pool).
    With a quantizer on each, QAT trains against the rounding the int8 model will do, and the
    converter takes these calibrated ranges instead of estimating them afresh.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.inner_quantizer = _activation_quantizer()
        self.inner_ranges = {
            name: self.inner_quantizer.build((), name, self) for name in self.inner_tensors
        }

    def quantize_inner(self, name, tensor, training):
        if training is None:
            training = tf_keras.backend.learning_phase()
        if name in OUTLIER_RANGES:
            # Kept as calibrated: the moving average would pull it back
            # towards every batch's outliers while QAT fine-tunes.
            training = False
        return self.inner_quantizer(tensor, training, self.inner_ranges[name])


class PassThroughQuantizeConfig(OutputQuantizeConfig):
    """No quantizer of its own: TFLite's int8 AVERAGE_POOL_2D keeps its input's scale, and a
    separate output range would add a requantising QUANTIZE op after every pooling."""

    def get_output_quantizers(self, layer):
        return []


def quantize_scope():
    return quantize_keras.quantize_scope(
        {
            "OutputQuantizeConfig": OutputQuantizeConfig,
            "PassThroughQuantizeConfig": PassThroughQuantizeConfig,
            "DepthwiseQuantizeConfig": DepthwiseQuantizeConfig,
            "DepthwiseWeightsQuantizer": DepthwiseWeightsQuantizer,
            "TwinResidualNorm": TwinResidualNorm,
            "QatResidualNorm": QatResidualNorm,
        }
    )


def make_qat_model(twin):
    """Annotates every layer of the tf_keras twin and applies tfmot's default 8-bit scheme
    (Conv/Depthwise + BN folding, per-channel weights) plus the ResidualNorm config."""

    after_convolution = set()
    for layer in twin.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            inbound = layer.inbound_nodes[0].inbound_layers
            # (tf_keras' DepthwiseConv2D is not a Conv2D subclass: name both.)
            if isinstance(inbound, (tf_keras.layers.Conv2D, tf_keras.layers.DepthwiseConv2D)):
                after_convolution.add(layer.name)

    def annotate(layer):
        if isinstance(layer, tf_keras.layers.InputLayer):
            return layer
        standalone_bn = (
            isinstance(layer, tf_keras.layers.BatchNormalization)
            and layer.name not in after_convolution
        )
        if isinstance(layer, TwinResidualNorm):
            layer = QatResidualNorm.from_config({**layer.get_config(), "int8_ops": True})
            return quantize_keras.quantize_annotate_layer(layer, OutputQuantizeConfig())
        if standalone_bn:
            return quantize_keras.quantize_annotate_layer(layer, OutputQuantizeConfig())
        if isinstance(layer, tf_keras.layers.AveragePooling2D):
            return quantize_keras.quantize_annotate_layer(layer, PassThroughQuantizeConfig())
        return quantize_keras.quantize_annotate_layer(layer)

    annotated = tf_keras.models.clone_model(twin, clone_function=annotate)
    for source, target in zip(twin.layers, annotated.layers, strict=True):
        # Same layers in the same order; a QatResidualNorm's ranges come after its lambda.
        for weight, value in zip(getattr(target, "layer", target).weights, source.get_weights()):
            weight.assign(value)
    with quantize_scope():
        return quantize_keras.quantize_apply(annotated, scheme=QuantizeScheme())


def distillation_targets(dataset, with_teacher):
    """(x, {"label", "teacher_logits"}) -> (x, [label, teacher logits...]) for tf_keras losses."""

    def pack(features, targets):
        if isinstance(targets, dict):
            label = tf.cast(targets["label"], tf.float32)[:, None]
            return features, tf.concat([label, targets["teacher_logits"]], axis=1)
        return features, tf.cast(targets, tf.float32)[:, None]

    return dataset.map(pack)


def make_loss(temperature, label_weight):
    """Paper eq. 5 (`distillation_loss`, the Distiller's) on packed targets: the label, then the
    teacher logits; plain cross-entropy when no teacher logits are packed."""

    def loss(y_true, y_pred):
        label = tf.cast(y_true[:, 0], tf.int32)
        if y_true.shape[-1] == 1:
            return tf_keras.losses.sparse_categorical_crossentropy(label, y_pred, from_logits=True)
        return distillation_loss(label, y_pred, y_true[:, 1:], label_weight, temperature)

    return loss


def packed_accuracy(y_true, y_pred):
    label = tf.cast(y_true[:, 0], tf.int64)
    return tf.cast(tf.equal(tf.argmax(y_pred, axis=-1), label), tf.float32)


class StopAfter(tf_keras.callbacks.Callback):
    """Ends `fit` after epoch `last` (1-based), so that a phase of a longer fine-tuning
    counts its epochs out of the whole ("Epoch 2/12" where it stops at 8)."""

    def __init__(self, last):
        super().__init__()
        self.last = last

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.last:
            self.model.stop_training = True


class FrozenStatistics(tf_keras.Model):
    """Runs the QAT model in inference mode while its weights train: BatchNorm statistics
    and quantizer ranges stay fixed, gradients still pass the fake-quant nodes."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, inputs, training=None):
        return self.inner(inputs, training=False)


def batch_norm_layers(qat_model):
    """The BatchNormalization layers of a QAT model (inside their quantize wrappers)."""
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, tf_keras.layers.BatchNormalization):
            yield inner


@contextlib.contextmanager
def _observing_activations():
    """Activation quantizers observe instead of quantising: each min / max variable takes the
    running minimum / maximum (0 included, as TFLite requires) of the tensors it sees."""
    seen = set()

    def observe(inputs, min_var, max_var, per_channel=False, symmetric=False, **kwargs):
        if per_channel or symmetric:
            raise NotImplementedError("calibration observes per-tensor affine activations only")
        low = tf.minimum(tf.reduce_min(inputs), 0.0)
        high = tf.maximum(tf.reduce_max(inputs), 0.0)
        if min_var.ref() not in seen:  # first batch: replace tfmot's initial [-6, 6]
            seen.add(min_var.ref())
            min_var.assign(tf.reshape(low, min_var.shape))
            max_var.assign(tf.reshape(high, max_var.shape))
        else:
            min_var.assign(tf.minimum(min_var, low))
            max_var.assign(tf.maximum(max_var, high))
        return inputs

    with replaced_activation_quantizer(observe):
        yield


def calibrate(qat_model, batches, outlier_ranges=OUTLIER_RANGES):
    """Sets every activation quantizer's range to the min / max it sees over `batches`, the
    float model running with BatchNorm in inference mode (its statistics untouched).

    tfmot would otherwise start every range at [-6, 6] and move it by an exponential average
    with decay 0.999 per training step: after a short fine-tuning the ranges would still be
    mostly that guess. This is the min / max observer pass of PyTorch's and the TFLite
    converter's calibration.

    ResidualNorm's reciprocal square root r and r + lambda (OUTLIER_RANGES, `outlier_ranges`)
    leave outliers out: r takes the maximum, but no more than the smallest non-zero int8
    variance gives (1 / sqrt(half a variance step + epsilon)), and r + lambda that cap plus
    the largest lambda: a channel that a ReLU zeroed in one clip has r = 1 / sqrt(epsilon),
    which would set a scale far too coarse for every other value, while a variance below half
    a step is 0 in int8 whatever its r.
    """
    layers = list(batch_norm_layers(qat_model))
    trainable = [layer.trainable for layer in layers]
    norms = list(_residual_norms(qat_model))
    for layer in layers:
        layer.trainable = False  # tf_keras: a non-trainable BatchNorm runs in inference mode
    try:
        with _observing_activations():
            for features in batches:
                qat_model(features, training=True)
    finally:
        for layer, was in zip(layers, trainable):
            layer.trainable = was
    for norm in norms:
        ranges = norm.inner_ranges
        step = (ranges["variance"]["max_var"] - ranges["variance"]["min_var"]) / 255
        largest = tf.minimum(ranges["rsqrt"]["max_var"], 1 / tf.sqrt(step / 2 + norm.epsilon))
        if "rsqrt" in outlier_ranges:
            ranges["rsqrt"]["max_var"].assign(largest)
        if "gain" in outlier_ranges:
            largest += tf.reduce_max(norm.residual_lambda)
            ranges["gain"]["max_var"].assign(tf.minimum(ranges["gain"]["max_var"], largest))


def _residual_norms(qat_model):
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, QatResidualNorm):
            yield inner


class EpochCheckpoints(tf_keras.callbacks.Callback):
    """Keeps the history of a QAT phase and, with a `directory`, saves the model (weights and
    quantizer ranges) and optimiser after every epoch, so that a killed QAT resumes from its
    last complete epoch. The history goes first (`history-N.json`), then the checkpoint,
    whose index file `tf.train.CheckpointManager` replaces last: a torn save is never read."""

    def __init__(self, directory, model, optimizer, history=None):
        super().__init__()
        self.directory = Path(directory) if directory else None
        self.history = history if history is not None else {}
        if self.directory:
            self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
            self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2)

    def latest_epoch(self):
        if not self.directory or not self.manager.latest_checkpoint:
            return None
        return int(self.manager.latest_checkpoint.rsplit("-", 1)[1])

    def restore(self, variables):
        """Loads the newest checkpoint (after building the optimiser for `variables`);
        returns its epoch, or None where there is none."""
        epoch = self.latest_epoch()
        if epoch is not None:
            self.checkpoint.optimizer.build(variables)
            try:
                self.checkpoint.restore(
                    self.manager.latest_checkpoint
                ).assert_existing_objects_matched()
            except (AssertionError, ValueError) as error:  # unmatched / other shapes
                raise UserError(
                    f"{self.manager.latest_checkpoint}: a QAT checkpoint of another graph "
                    "(left by an earlier version of asc_keras?), which this QAT model cannot "
                    f"resume from; delete {self.directory.parent.parent} and rerun with "
                    "--resume (the finished stages are kept)"
                ) from error
            self.history = json.loads((self.directory / f"history-{epoch}.json").read_text())
            print(f"resuming QAT from epoch {epoch} ({self.manager.latest_checkpoint})")
        return epoch

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if self.directory:
            atomic_write_text(
                self.directory / f"history-{epoch + 1}.json", json.dumps(self.history)
            )
            with disk_full_is_an_error(self.directory, "QAT checkpoint folder"):
                self.manager.save(checkpoint_number=epoch + 1)


def fine_tune(
    qat_model,
    train_dataset,
    *,
    steps,
    quantization,
    distillation,
    with_teacher,
    verbose=2,
    checkpoint_dir=None,
):
    """QAT fine-tuning: `quantization.epochs` epochs, the last `freeze_epochs` with frozen
    BN statistics and quantizer ranges. `train_dataset(first_epoch, epochs)` yields batches.

    With a `checkpoint_dir`, every epoch is saved there and a rerun continues from the last
    one, on the batches an uninterrupted run would see. Returns the history."""
    loss = make_loss(distillation.temperature, distillation.label_weight_end)
    calibrate(
        qat_model, (x for x, _ in train_dataset(0, 1).take(quantization.representative_batches))
    )
    free_epochs = quantization.epochs - quantization.freeze_epochs
    phases = []
    for model, first, last, name in (
        (qat_model, 0, free_epochs, "free"),
        (FrozenStatistics(qat_model), free_epochs, quantization.epochs, "frozen"),
    ):
        if last > first:
            optimizer = tf_keras.optimizers.Adam(quantization.learning_rate)
            accuracy = tf_keras.metrics.MeanMetricWrapper(packed_accuracy, name="accuracy")
            model.compile(optimizer, loss=loss, metrics=[accuracy])
            directory = Path(checkpoint_dir) / name if checkpoint_dir else None
            phases.append((model, first, last, EpochCheckpoints(directory, model, optimizer)))
    # A resumed run continues in the newest phase that has a checkpoint.
    started = [i for i, phase in enumerate(phases) if phase[3].latest_epoch() is not None]
    history = {}
    for model, first, last, checkpoints in phases[max(started, default=0) :]:
        checkpoints.history = history
        epoch = checkpoints.restore(qat_model.trainable_variables)
        epoch = first if epoch is None else epoch
        if epoch < last:
            data = distillation_targets(train_dataset(epoch, last), with_teacher)
            targets = data.element_spec[1]
            build_legacy_model_for_fit(
                model,
                tf.zeros([1, qat_model.output_shape[-1]]),
                tf.zeros([1, *targets.shape[1:]], targets.dtype),
            )
            model.fit(
                data,
                epochs=quantization.epochs,  # one count over both phases
                initial_epoch=epoch,
                steps_per_epoch=steps,
                callbacks=[checkpoints, StopAfter(last)],
                verbose=verbose,
            )
        history = checkpoints.history
    return history
