"""Quantization-aware training with tensorflow-model-optimization: the only tfmot import.

Importing tfmot sets TF_USE_LEGACY_KERAS=1 for the whole process, so nothing imports this
module at load time: the training tool runs it in a subprocess (`asc_keras.quantize.stage`).
Weights are quantised per channel (symmetric) and activations per tensor (affine), as with
PyTorch's fbgemm observer the paper used. ResidualNorm's output (and a stage BatchNorm's)
is quantised through `OutputQuantizeConfig`; inner MEAN / RSQRT tensors are calibrated at
conversion.
"""

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from asc_keras.quantize.twin import TwinResidualNorm

quantize_keras = tfmot.quantization.keras


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
        return [
            quantize_keras.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False
            )
        ]

    def get_config(self):
        return {}


def quantize_scope():
    return quantize_keras.quantize_scope(
        {
            "OutputQuantizeConfig": OutputQuantizeConfig,
            "TwinResidualNorm": TwinResidualNorm,
        }
    )


def make_qat_model(twin):
    """Annotates every layer of the tf_keras twin and applies tfmot's default 8-bit scheme
    (Conv/Depthwise + BN folding, per-channel weights) plus the ResidualNorm config."""

    after_convolution = set()
    for layer in twin.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            inbound = layer.inbound_nodes[0].inbound_layers
            if isinstance(inbound, tf_keras.layers.Conv2D):  # DepthwiseConv2D is one too
                after_convolution.add(layer.name)

    def annotate(layer):
        if isinstance(layer, tf_keras.layers.InputLayer):
            return layer
        standalone_bn = (
            isinstance(layer, tf_keras.layers.BatchNormalization)
            and layer.name not in after_convolution
        )
        if isinstance(layer, TwinResidualNorm) or standalone_bn:
            return quantize_keras.quantize_annotate_layer(layer, OutputQuantizeConfig())
        return quantize_keras.quantize_annotate_layer(layer)

    annotated = tf_keras.models.clone_model(twin, clone_function=annotate)
    annotated.set_weights(twin.get_weights())
    with quantize_scope():
        return quantize_keras.quantize_apply(annotated)


def distillation_targets(dataset, with_teacher):
    """(x, {"label", "teacher_logits"}) -> (x, [label, teacher logits...]) for tf_keras losses."""

    def pack(features, targets):
        if isinstance(targets, dict):
            label = tf.cast(targets["label"], tf.float32)[:, None]
            return features, tf.concat([label, targets["teacher_logits"]], axis=1)
        return features, tf.cast(targets, tf.float32)[:, None]

    return dataset.map(pack)


def make_loss(temperature, label_weight):
    """Paper eq. 5 on packed targets; plain cross-entropy when no teacher logits are packed."""

    def loss(y_true, y_pred):
        label = tf.cast(y_true[:, 0], tf.int32)
        hard = tf_keras.losses.sparse_categorical_crossentropy(label, y_pred, from_logits=True)
        if y_true.shape[-1] == 1:
            return hard
        teacher = y_true[:, 1:] / temperature
        student = y_pred / temperature
        kl = tf.reduce_sum(
            tf.nn.softmax(teacher) * (tf.nn.log_softmax(teacher) - tf.nn.log_softmax(student)),
            axis=-1,
        )
        return label_weight * hard + (1 - label_weight) * temperature**2 * kl

    return loss


def packed_accuracy(y_true, y_pred):
    label = tf.cast(y_true[:, 0], tf.int64)
    return tf.cast(tf.equal(tf.argmax(y_pred, axis=-1), label), tf.float32)


class FrozenStatistics(tf_keras.Model):
    """Runs the QAT model in inference mode while its weights train: BatchNorm statistics
    and quantizer ranges stay fixed, gradients still pass the fake-quant nodes."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, inputs, training=None):
        return self.inner(inputs, training=False)


def fine_tune(qat_model, train_dataset, steps, quantization, distillation, with_teacher, verbose=2):
    """QAT fine-tuning: `quantization.epochs` epochs, the last `freeze_epochs` with frozen
    BN statistics and quantizer ranges. `train_dataset(first_epoch, epochs)` yields batches."""
    loss = make_loss(distillation.temperature, distillation.label_weight_end)
    # Calibration first, as PyTorch's observers do: training-mode passes set the quantizer
    # ranges (tfmot takes them from the first batch, then moves them slowly) and BN
    # statistics from several batches before any weight changes.
    for features, _ in train_dataset(0, 1).take(quantization.representative_batches):
        qat_model(features, training=True)
    free_epochs = max(0, quantization.epochs - quantization.freeze_epochs)
    history = {}
    for model, first, last in (
        (qat_model, 0, free_epochs),
        (FrozenStatistics(qat_model), free_epochs, quantization.epochs),
    ):
        if last <= first:
            continue
        model.compile(
            tf_keras.optimizers.Adam(quantization.learning_rate),
            loss=loss,
            metrics=[packed_accuracy],
        )
        data = distillation_targets(train_dataset(first, last), with_teacher)
        result = model.fit(
            data, epochs=last, initial_epoch=first, steps_per_epoch=steps, verbose=verbose
        )
        for key, values in result.history.items():
            history.setdefault(key, []).extend(values)
    return history
