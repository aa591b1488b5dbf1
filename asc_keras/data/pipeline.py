"""The tf.data pipeline: waveform cache -> DIR/ADIR -> roll -> log-mel -> mask -> Freq-MixStyle.

Augmentations run on whole batches (vectorised), in the order the paper applies them; every
random draw comes from a stateless seed, so `seed` fixes every epoch's batches exactly.
"""

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from asc_keras.audio.frontend import LogMel
from asc_keras.config import ConfigError
from asc_keras.data import augment
from asc_keras.data.cache import WaveformCache, prepare_cache
from asc_keras.data.tau22 import (  # noqa: F401  (resolve_data_root, with_data_root: here too)
    DatasetError,
    resolve_data_root,
    with_data_root,
)


def open_split(config, split, progress=True):
    """The waveform cache of `split`, prepared first if needed (see tools/prepare_dataset.py)."""
    root = resolve_data_root(config)
    cache_root = config.data.cache_dir or root / "asc_keras_cache"
    return prepare_cache(
        root,
        split,
        cache_root,
        sample_rate=config.data.sample_rate,
        duration=config.data.duration,
        progress=progress,
    )


def impulse_response_folder(config):
    """The DIR / ADIR impulse-response folder of `config` (None when DIR is off); a relative
    augment.dir.folder lies under the dataset root."""
    dir_config = config.augment.dir
    if not (dir_config.enabled and dir_config.probability > 0):
        return None
    if not dir_config.folder:
        raise ConfigError("augment.dir.enabled needs augment.dir.folder (the impulse responses)")
    folder = Path(dir_config.folder)
    return folder if folder.is_absolute() else resolve_data_root(config) / folder


def resolve_energy_threshold(dir_config, train_cache):
    """ADIR's tau: None (plain DIR), the configured number, or the training split's mean."""
    if dir_config.energy_threshold == "auto":
        return float(train_cache.mean_energy)
    return dir_config.energy_threshold


def describe_impulse_responses(config, train_cache):
    """One line: whether DIR / ADIR runs, on which devices, from where, and tau as used."""
    folder = impulse_response_folder(config)
    if folder is None:
        return "DIR: off"
    dir_config = config.augment.dir
    tau = resolve_energy_threshold(dir_config, train_cache)
    kind = "plain DIR (no energy threshold)" if tau is None else f"ADIR, energy threshold {tau:g}"
    if dir_config.energy_threshold == "auto":
        kind += " (auto: the training split's mean energy)"
    return (
        f"{kind}; devices {list(dir_config.devices)}, probability {dir_config.probability:g}, "
        f"impulse responses from {folder}"
    )


def _aligned_teacher_logits(teacher_logits, cache, num_classes):
    if hasattr(teacher_logits, "aligned_to"):
        teacher_logits = teacher_logits.aligned_to(cache.filenames)
    logits = np.asarray(teacher_logits, np.float32)
    if logits.shape != (len(cache), num_classes):
        raise ValueError(
            f"teacher logits have shape {logits.shape}; expected {(len(cache), num_classes)} "
            f"(one row per clip of the split, one column per class)"
        )
    return logits


class Augmenter:
    """The training-time augmentations of a config, applied to one batch at a time."""

    def __init__(self, config, cache):
        self.config = config.augment
        dir_config = self.config.dir
        self.responses = None
        folder = impulse_response_folder(config)
        if folder is not None:
            samples = cache.waveforms.shape[1]
            self.responses = augment.ImpulseResponses(
                augment.load_impulse_responses(folder, cache.sample_rate), samples
            )
            self.energy_threshold = resolve_energy_threshold(dir_config, cache)
        self.eligible = np.array([r.device in dir_config.devices for r in cache.records])

    def waveforms(self, waveforms, index, seed):
        dir_seed, roll_seed = augment.split_seed(seed, 2)
        if self.responses is not None:
            waveforms = augment.apply_device_impulse_response(
                waveforms,
                tf.gather(self.eligible, index),
                self.responses,
                self.config.dir.probability,
                self.energy_threshold,
                dir_seed,
            )
        if self.config.time_roll > 0:
            shifts = augment.random_roll_shifts(
                tf.shape(waveforms)[0], self.config.time_roll, roll_seed
            )
            waveforms = augment.roll_waveforms(waveforms, shifts)
        return waveforms

    def features(self, features, seed):
        mask_seed, mix_seed = augment.split_seed(seed, 2)
        if self.config.freq_mask > 0:
            starts, widths = augment.random_frequency_bands(
                tf.shape(features)[0], features.shape[1], self.config.freq_mask, mask_seed
            )
            features = augment.mask_frequency_bands(features, starts, widths)
        fms = self.config.freq_mixstyle
        if fms.probability > 0:
            features = augment.freq_mixstyle(
                features, fms.probability, fms.alpha, fms.epsilon, mix_seed
            )
        return features


@dataclasses.dataclass(frozen=True)
class Shard:
    """One input pipeline's part of every global training batch (distributed training).

    Pipeline `index` of `count` takes the `index`-th contiguous slice of each global batch
    and yields it as `replicas` consecutive per-replica batches, so over all pipelines and
    replicas a step covers exactly the global batch a single device would see. Its
    augmentation draws come from its own seed.
    """

    count: int = 1
    index: int = 0
    replicas: int = 1


def steps_per_epoch(cache, batch_size):
    """Training batches per epoch (the last incomplete batch is dropped)."""
    steps = len(cache) // batch_size
    if steps == 0:
        raise ConfigError(
            f"batch size {batch_size} is larger than the {len(cache)} training clips; "
            f"lower training.batch_size"
        )
    return steps


def make_dataset(
    split,
    config,
    *,
    teacher_logits=None,
    training=False,
    batch_size=None,
    seed=None,
    first_epoch=0,
    epochs=None,
    shard=None,
):
    """Batches of (log-mel (B, mels, frames, 1), labels) for `model.fit` on any backend.

    Evaluation (training False) yields the split once, in order, without augmentation.
    Training yields epochs `first_epoch`, `first_epoch + 1`, ... back to back (up to `epochs`,
    else without end): each epoch a fresh shuffle with augmentation, its randomness drawn
    from (seed, epoch) alone, so a run resumed at epoch k sees exactly the batches an
    uninterrupted run would. Pass `steps_per_epoch(cache, batch_size)` to `model.fit`.
    The waveforms are held in memory or streamed from the cache file as
    `WaveformCache.reader` chooses (data.memory_budget_gb); the batches are the same.

    Args:
        split: a split name ("train", "evaluate", "split25", ...) or a `WaveformCache`.
        config: a `Config`.
        teacher_logits: per-clip teacher logits, (clips, classes) aligned with the split or an
            object with `aligned_to(filenames)`; then the targets are
            {"label": labels, "teacher_logits": logits}.
        training: shuffle, augment and drop each epoch's last incomplete batch.
        batch_size: defaults to config.training.batch_size.
        seed: defaults to config.training.seed.
        first_epoch, epochs: the epochs a training dataset covers, [first_epoch, epochs).
        shard: a training `Shard` (distributed training); `batch_size` stays the global batch.
    """
    cache = split if isinstance(split, WaveformCache) else open_split(config, split)
    batch_size = batch_size or config.training.batch_size
    seed = config.training.seed if seed is None else seed
    if shard is not None and batch_size % (shard.count * shard.replicas):
        raise ValueError(
            f"global batch {batch_size} cannot be split over {shard.count} pipelines x "
            f"{shard.replicas} replicas"
        )
    labels = np.array([r.label for r in cache.records], np.int32)
    if (labels < 0).any() and (training or teacher_logits is not None):
        raise DatasetError("this split has no labels (the test split); it cannot be trained on")
    if teacher_logits is not None:
        teacher_logits = _aligned_teacher_logits(teacher_logits, cache, config.model.num_classes)
    if training:
        steps = steps_per_epoch(cache, batch_size)
        plan = _training_plan(
            len(cache),
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            first_epoch=first_epoch,
            epochs=epochs,
            shard=shard,
        )
    else:
        plan = _evaluation_plan(len(cache), batch_size)
    load = _batch_loader(
        config,
        cache,
        labels=labels,
        teacher_logits=teacher_logits,
        augmenter=Augmenter(config, cache) if training else None,
    )
    dataset = plan.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _evaluation_plan(clips, batch_size):
    """(index, seed) per batch: the split once, in order (the seeds are unused)."""
    indices = tf.data.Dataset.range(clips).batch(batch_size)
    return indices.map(lambda index: (index, tf.zeros([2], tf.int64)))


def _training_plan(clips, *, steps, batch_size, seed, first_epoch, epochs, shard):
    """(index, seed) per batch of epochs [first_epoch, epochs): each epoch's order and
    augmentation seeds drawn from (seed, epoch) alone; under a `shard`, this pipeline's
    slice of every global batch, as `replicas` consecutive per-replica batches."""

    def epoch_batches(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        order_seed, batch_seeds = augment.split_seed(epoch_seed, 2)
        order = tf.argsort(tf.random.stateless_uniform([clips], order_seed))
        index = tf.reshape(tf.cast(order[: steps * batch_size], tf.int64), [steps, batch_size])
        count = steps
        if shard is not None and (shard.count, shard.replicas) != (1, 1):
            width = batch_size // shard.count
            index = index[:, shard.index * width : (shard.index + 1) * width]
            count = steps * shard.replicas
            index = tf.reshape(index, [count, width // shard.replicas])
            batch_seeds = augment.split_seed(batch_seeds, shard.count)[shard.index]
        seeds = tf.random.experimental.stateless_split(batch_seeds, num=count)
        return tf.data.Dataset.from_tensor_slices((index, seeds))

    epoch_numbers = (
        tf.data.Dataset.counter(first_epoch)
        if epochs is None
        else tf.data.Dataset.range(first_epoch, epochs)
    )
    return epoch_numbers.flat_map(epoch_batches)


def _batch_loader(config, cache, *, labels, teacher_logits, augmenter):
    """The tf.data map from (index, seed) to (features, targets): rows of the cache, waveform
    augmentations, log-mel, feature augmentations."""
    reader = cache.reader(config.data.memory_budget_gb)
    frontend = LogMel(config.frontend, cache.sample_rate)

    def load(index, batch_seed):
        batch = tf.cast(reader.gather(index), tf.float32)
        if augmenter is not None:
            wave_seed, feature_seed = augment.split_seed(batch_seed, 2)
            batch = augmenter.waveforms(batch, index, wave_seed)
        features = frontend(batch)[..., None]
        if augmenter is not None:
            features = augmenter.features(features, feature_seed)
        targets = tf.gather(labels, index)
        if teacher_logits is not None:
            targets = {"label": targets, "teacher_logits": tf.gather(teacher_logits, index)}
        return features, targets

    return load


@dataclasses.dataclass
class Splits:
    train: object  # WaveformCache
    evaluate: object

    @classmethod
    def open(cls, config, progress=True):
        """The waveform caches of config.data's training and evaluation splits."""
        return cls(
            open_split(config, config.data.train_split, progress=progress),
            open_split(config, config.data.eval_split, progress=progress),
        )

    def labels(self, split):
        return np.array([r.label for r in getattr(self, split).records])

    def devices(self, split):
        return np.array([r.device for r in getattr(self, split).records])

    def of_device(self, device):
        """Both splits restricted to the clips of `device` (in their order)."""
        return Splits(
            *(
                getattr(self, split).subset(np.flatnonzero(self.devices(split) == device))
                for split in ("train", "evaluate")
            )
        )
