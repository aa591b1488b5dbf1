import copy
import math

import keras
from keras import ops


def distillation_loss(labels, student_logits, teacher_logits, label_weight, temperature):
    """Per-example paper eq. 5 loss with CP-JKU's KD term.

    label_weight * CE(y, s) + (1 - label_weight) * T^2 * KL(softmax(t / T) || softmax(s / T))
    """
    hard = keras.losses.sparse_categorical_crossentropy(labels, student_logits, from_logits=True)
    teacher_probs = ops.softmax(teacher_logits / temperature, axis=-1)
    teacher_log_probs = ops.log_softmax(teacher_logits / temperature, axis=-1)
    student_log_probs = ops.log_softmax(student_logits / temperature, axis=-1)
    kl = ops.sum(teacher_probs * (teacher_log_probs - student_log_probs), axis=-1)
    return label_weight * hard + (1.0 - label_weight) * temperature**2 * kl


@keras.saving.register_keras_serializable(package="asc_keras")
class DistillationLoss(keras.losses.Loss):
    """`distillation_loss` as a Keras loss on {"label", "teacher_logits"} targets.

    It holds T and lambda itself (as Keras' own `LogitsDistillation` holds its temperature):
    lambda is a non-trainable variable that a model can track and a schedule can move.

    Args:
        temperature: T > 0.
        label_weight: lambda in [0, 1], a number or a `keras.Variable` to share.
    """

    def __init__(
        self,
        temperature=2.0,
        label_weight=0.02,
        name="distillation",
        reduction="mean_with_sample_weight",
        **kwargs,
    ):
        super().__init__(name=name, reduction=reduction, **kwargs)
        if isinstance(label_weight, keras.Variable):
            value = float(ops.convert_to_numpy(label_weight))
        else:
            value = label_weight
            label_weight = keras.Variable(
                float(value), trainable=False, name="label_weight", dtype="float32"
            )
        if not temperature > 0 or not 0 <= value <= 1:
            raise ValueError(
                f"distillation needs temperature > 0 and 0 <= label_weight <= 1; got "
                f"temperature={temperature!r}, label_weight={value!r}"
            )
        self.temperature = float(temperature)
        self.label_weight = label_weight

    def call(self, y_true, y_pred):
        return distillation_loss(
            y_true["label"],
            y_pred,
            y_true["teacher_logits"],
            self.label_weight,
            self.temperature,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "label_weight": float(ops.convert_to_numpy(self.label_weight)),
        }


@keras.saving.register_keras_serializable(package="asc_keras")
class Distiller(keras.Model):
    """Trains a student on labels and precomputed (fused) teacher logits.

    loss = lambda * CE(y, s) + (1 - lambda) * T^2 * KL(softmax(t / T) || softmax(s / T))

    The dataset yields (features, {"label": y, "teacher_logits": t}); only the student runs.
    lambda (`label_weight`) is a non-trainable variable that `LabelWeightSchedule` moves during
    training. Only `compute_loss` and `compute_metrics` are overridden, so `fit` works
    unchanged on the TensorFlow, JAX and PyTorch backends.

    Args:
        student: the Keras model to train; `Distiller.student` is what gets saved and exported.
        temperature: T.
        label_weight: initial lambda.

    Example:
        >>> from asc_keras import ds_flexinet
        >>> distiller = Distiller(ds_flexinet("sm2"), temperature=2.0, label_weight=0.02)
        >>> distiller.compile(optimizer="adam", metrics=["accuracy"])
        >>> distiller.student.name
        'ds_flexinet_sm2'

    Reference: paper section II-D, eq. 5; Hinton et al. 2015.
    """

    def __init__(self, student, temperature=2.0, label_weight=0.02, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        # Keras Loss objects average over the (weighted) batch and scale for tf.distribute
        # (each replica's loss is 1 / replicas of the global one: gradients are summed).
        self.distillation_loss = DistillationLoss(temperature, label_weight)
        # Tracked here, so that it is saved with the weights and every backend's train step
        # reads its current value.
        self.label_weight = self.distillation_loss.label_weight
        self._label_loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        )
        if student.built:
            # Built from the start, like a functional model: weights (a checkpoint) load
            # before the first batch.
            self.build(student.input_shape)

    @property
    def temperature(self):
        return self.distillation_loss.temperature

    def build(self, input_shape=None):
        if not self.student.built:
            self.student.build(input_shape)

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y, dict) and not training:
            # Validation on plain labels: the label cross-entropy.
            loss = self._label_loss(y, y_pred, sample_weight)
        elif not isinstance(y, dict) or "teacher_logits" not in y:
            raise ValueError(
                "Distiller targets must be {'label': ..., 'teacher_logits': ...}; "
                "pass teacher_logits to make_dataset"
            )
        else:
            loss = self.distillation_loss(y, y_pred, sample_weight)
        if self.losses:  # the student's own (regularisation) losses
            loss = loss + super().compute_loss(x, y, y_pred, sample_weight, training)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels = y["label"] if isinstance(y, dict) else y
        return super().compute_metrics(x, labels, y_pred, sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "student": keras.saving.serialize_keras_object(self.student),
            "temperature": self.temperature,
            "label_weight": float(ops.convert_to_numpy(self.label_weight)),
        }

    @classmethod
    def from_config(cls, config):
        # A copy: Keras empties the nested config it deserializes, and a config may be reused.
        student = keras.saving.deserialize_keras_object(copy.deepcopy(config["student"]))
        return cls(**{**config, "student": student})


SCHEDULES = ("constant", "linear", "cosine")


def label_weight_at(epoch, epochs, schedule, start, end):
    """lambda for `epoch` (0-based) of `epochs`: constant `start`, or linear / cosine from
    `start` at the first epoch to `end` at the last."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown label-weight schedule {schedule!r}; valid: {list(SCHEDULES)}")
    if schedule == "constant" or epochs <= 1:
        return start
    progress = min(max(epoch / (epochs - 1), 0.0), 1.0)
    if schedule == "linear":
        return start + (end - start) * progress
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


class LabelWeightSchedule(keras.callbacks.Callback):
    """Sets the Distiller's lambda at the start of every epoch (paper: "updated during
    training")."""

    def __init__(self, epochs, schedule="constant", start=0.02, end=0.02):
        super().__init__()
        label_weight_at(0, epochs, schedule, start, end)  # validates the schedule name
        self.epochs, self.schedule, self.start, self.end = epochs, schedule, start, end

    def on_epoch_begin(self, epoch, logs=None):
        value = label_weight_at(epoch, self.epochs, self.schedule, self.start, self.end)
        self.model.label_weight.assign(value)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["label_weight"] = float(ops.convert_to_numpy(self.model.label_weight))
