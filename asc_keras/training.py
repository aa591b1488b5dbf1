"""One training stage: optimiser and LR schedule from the config, atomic checkpoints every
epoch, exact resume, CSV / TensorBoard logs, best and last model.

A stage folder holds `checkpoints/epoch-NNNN.weights.h5` with `epoch-NNNN.json` beside each
(the epoch, the SHA-256 of the weights file and the history so far), `history.csv`,
`tensorboard/`, `best.keras` and `last.keras`. Files are written to a temporary name and
renamed, and a checkpoint whose hash does not match its weights is never loaded, so a run
killed at any moment resumes from its last complete epoch.
"""

import csv
import dataclasses
import hashlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

from asc_keras.distill.distiller import Distiller
from asc_keras.distribution import Distribution, scaled_learning_rate, unsynchronized_batch_norm
from asc_keras.errors import UserError
from asc_keras.utils import atomic_path, atomic_write_text


class TrainingError(UserError, RuntimeError):
    """A stage that cannot start or continue (e.g. an unfinished run without --resume)."""


def _schedule_steps(training, steps_per_epoch):
    """(total steps, warm-up steps): the warm-up is at most the whole run less one step."""
    total = max(1, training.epochs * steps_per_epoch)
    return total, min(training.warmup_epochs * steps_per_epoch, total - 1)


def learning_rate_schedule(training, steps_per_epoch):
    """Linear warm-up from 0 to `learning_rate`, then cosine decay to the final fraction."""
    total, warmup = _schedule_steps(training, steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else training.learning_rate,
        decay_steps=total - warmup,
        alpha=training.final_lr_fraction,
        warmup_target=training.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def describe_schedule(training, steps_per_epoch):
    """One line: steps and epochs, and the learning-rate schedule as `learning_rate_schedule`
    builds it."""
    _, warmup = _schedule_steps(training, steps_per_epoch)
    warm = f"linear warm-up from 0 over {warmup} steps, then " if warmup else ""
    return (
        f"{steps_per_epoch} steps per epoch x {training.epochs} epochs; learning rate: {warm}"
        f"cosine decay from {training.learning_rate:g} to "
        f"{training.learning_rate * training.final_lr_fraction:g}"
    )


def enable_determinism():
    """Deterministic kernels for the rest of the process (they cannot be turned off again):
    TensorFlow's op determinism, which covers tf.data on every backend, and PyTorch's
    deterministic algorithms on the torch backend. With fixed seeds, two runs on one machine
    then compute the same numbers; other CPUs may still round differently."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    if keras.backend.backend() == "torch":
        import torch

        torch.use_deterministic_algorithms(True)


def save_model(model, path):
    """Saves a Keras model atomically, as a model every backend can load."""
    with atomic_path(path) as tmp, unsynchronized_batch_norm(model):
        model.save(tmp)


def build_optimizer(training, steps_per_epoch):
    schedule = learning_rate_schedule(training, steps_per_epoch)
    if training.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=training.weight_decay)
    return keras.optimizers.Adam(schedule)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_history_csv(path, history):
    keys = sorted({k for row in history for k in row if k != "epoch"})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["epoch", *keys])
    for row in history:
        writer.writerow([row["epoch"], *[row.get(k, "") for k in keys]])
    atomic_write_text(path, buffer.getvalue())


def valid_checkpoints(directory):
    """(epoch, state, weights path) of every complete checkpoint, newest first."""
    found = []
    for state_path in sorted(Path(directory).glob("epoch-*.json"), reverse=True):
        try:
            state = json.loads(state_path.read_text())
            weights = state_path.parent / state["weights"]
            if weights.is_file() and _sha256(weights) == state["sha256"]:
                found.append((state["epoch"], state, weights))
        except (OSError, ValueError, KeyError):
            continue  # torn or foreign file: never loaded
    return found


class Checkpointer(keras.callbacks.Callback):
    """Saves weights (model and optimiser) and training state atomically after every epoch,
    and restores the newest complete checkpoint, as Keras' `BackupAndRestore` does.

    It writes into `stage_dir`/checkpoints and restores from `source_dir`/checkpoints (the
    same folder, except on the workers of a multi-worker run, which write to a scratch
    folder and resume from the chief's checkpoints).
    """

    def __init__(self, stage_dir, keep=2, source_dir=None):
        super().__init__()
        self.stage_dir = Path(stage_dir)
        self.directory = self.stage_dir / "checkpoints"
        self.source = Path(source_dir or stage_dir) / "checkpoints"
        self.history = []
        self.keep = keep

    def restore(self, model, stage_name, resume=False, distribution=None):
        """Loads the newest complete checkpoint into `model` (compiled) and returns the epoch
        to continue from: 0 for a new stage. A stage with checkpoints continues only with
        `resume`; without it, `TrainingError` says so and nothing is touched."""
        if self.source.is_dir() and any(self.source.iterdir()) and not resume:
            raise TrainingError(
                f"{stage_name} holds an unfinished training stage; rerun with --resume to "
                f"continue it, or choose another --out"
            )
        checkpoints = valid_checkpoints(self.source)
        if not checkpoints:
            return 0
        epoch, state, weights = checkpoints[0]
        with (distribution or Distribution()).scope():
            model.optimizer.build(model.trainable_variables)
            model.load_weights(weights)
        self.history = state["history"]
        print(f"resuming {Path(stage_name).name} from epoch {epoch} ({weights.name})")
        return epoch

    @property
    def best(self):
        """The best val_accuracy of the history so far (-inf when none)."""
        return max((row.get("val_accuracy", -np.inf) for row in self.history), default=-np.inf)

    def on_epoch_end(self, epoch, logs=None):
        self.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        name = f"epoch-{epoch + 1:04d}"
        weights = self.directory / f"{name}.weights.h5"
        with atomic_path(weights) as tmp:
            self.model.save_weights(tmp)
        state = {
            "epoch": epoch + 1,
            "weights": weights.name,
            "sha256": _sha256(weights),
            "history": self.history,
        }
        atomic_write_text(self.directory / f"{name}.json", json.dumps(state))
        _write_history_csv(self.stage_dir / "history.csv", self.history)
        for _, _, old_weights in valid_checkpoints(self.directory)[self.keep :]:
            old_weights.with_suffix("").with_suffix(".json").unlink(missing_ok=True)
            old_weights.unlink(missing_ok=True)


class BestModel(keras.callbacks.Callback):
    """Keeps the saved model (`to_save(model)`) with the best value of `monitor`."""

    def __init__(self, path, to_save, monitor="val_accuracy", best=-np.inf):
        super().__init__()
        self.path, self.to_save, self.monitor, self.best = Path(path), to_save, monitor, best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best = float(value)
            save_model(self.to_save(self.model), self.path)


def compile_stage(model, training, steps, distribution):
    """Compiles `model` for a stage: a Distiller brings its own loss (compute_loss), a plain
    classifier learns the labels. Weighted: the zero-weight clips that pad a data_parallel
    evaluation batch never count."""
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="mean_with_sample_weight"
    )
    with distribution.scope():
        model.compile(
            optimizer=build_optimizer(training, steps),
            loss=None if isinstance(model, Distiller) else loss,
            weighted_metrics=["accuracy"],
        )


def fit_stage(
    model,
    train_dataset,
    *,
    steps,
    config,
    stage_dir,
    validation=None,
    resume=False,
    export=lambda model: model,
    verbose=1,
    extra_callbacks=(),
    distribution=None,
):
    """Trains `model` (compiled here) for config.training.epochs in `stage_dir`.

    `train_dataset(first_epoch)` makes the training batches from that epoch on; `export(model)`
    is the Keras model written to best.keras / last.keras (the student of a Distiller).
    Returns the history rows. An unfinished stage needs `resume=True`.

    Under a `distribution`, `model` must have been created in `distribution.scope()`; only
    the chief writes, and every worker resumes from the chief's checkpoints.
    """
    distribution = distribution or Distribution()
    stage_dir = Path(stage_dir)
    learning_rate, how = scaled_learning_rate(config)
    training = dataclasses.replace(config.training, learning_rate=learning_rate)
    if verbose:
        print(f"{distribution.describe(training.batch_size)}; {how}")
        print(describe_schedule(training, steps))
    compile_stage(model, training, steps, distribution)
    # Every worker saves (saving can run collective ops that all workers must join), but
    # only the chief into the stage folder: the others into a scratch folder, removed after.
    write_dir = stage_dir if distribution.is_chief else Path(tempfile.mkdtemp(prefix="worker-"))
    checkpointer = Checkpointer(write_dir, source_dir=distribution.chief_path(stage_dir))
    try:
        first_epoch = checkpointer.restore(model, stage_dir, resume, distribution)
        if first_epoch >= training.epochs:
            # Killed after its last checkpoint, before last.keras: the checkpoint holds it.
            save_model(export(model), write_dir / "last.keras")
            return checkpointer.history
        callbacks = [
            *extra_callbacks,
            # best.keras before the checkpoint: a resumed epoch never finds its best skipped.
            BestModel(write_dir / "best.keras", export, best=checkpointer.best),
            checkpointer,
            keras.callbacks.TensorBoard(str(write_dir / "tensorboard")),
        ]
        validate = validation is not None and training.validate_every > 0
        batches = train_dataset(first_epoch)  # outside the scope: its tensors are not mirrored
        distribution.prepare_fit(model, batches)
        with distribution.scope():
            model.fit(
                batches,
                epochs=training.epochs,
                initial_epoch=first_epoch,
                steps_per_epoch=steps,
                validation_data=distribution.evaluation_dataset(validation) if validate else None,
                validation_freq=training.validate_every if validate else 1,
                callbacks=callbacks,
                shuffle=False,  # the dataset shuffles itself, per epoch
                verbose=verbose,
            )
        save_model(export(model), write_dir / "last.keras")
    finally:
        if write_dir != stage_dir:
            shutil.rmtree(write_dir, ignore_errors=True)
    return checkpointer.history
