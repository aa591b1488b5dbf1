import dataclasses

import keras
import numpy as np
import pytest

from asc_keras.audio import LogMel
from asc_keras.data.pipeline import Shard, make_dataset, open_split, steps_per_epoch


def first_batch(dataset):
    features, targets = next(iter(dataset))
    return np.asarray(features), targets


def test_training_batches_have_the_paper_shape_and_follow_the_seed(synthetic_config):
    train = open_split(synthetic_config, "train", progress=False)
    a = make_dataset(train, synthetic_config, training=True, seed=5)
    b = make_dataset(train, synthetic_config, training=True, seed=5)
    c = make_dataset(train, synthetic_config, training=True, seed=6)
    xa, ya = first_batch(a)
    assert xa.shape == (16, 256, 64, 1) and np.asarray(ya).shape == (16,)
    np.testing.assert_array_equal(xa, first_batch(b)[0])
    assert not np.array_equal(xa, first_batch(c)[0])


def test_every_epoch_is_a_new_shuffle_and_a_resumed_epoch_is_the_same(synthetic_config):
    train = open_split(synthetic_config, "train", progress=False)
    steps = steps_per_epoch(train, 16)
    assert steps == len(train) // 16  # the incomplete last batch is dropped
    two_epochs = list(make_dataset(train, synthetic_config, training=True, epochs=2))
    assert len(two_epochs) == 2 * steps
    labels = [
        np.concatenate([np.asarray(y) for _, y in two_epochs[i * steps : (i + 1) * steps]])
        for i in range(2)
    ]
    assert not np.array_equal(labels[0], labels[1])
    resumed = list(make_dataset(train, synthetic_config, training=True, first_epoch=1, epochs=2))
    for (x, y), (x_resumed, y_resumed) in zip(two_epochs[steps:], resumed):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(x_resumed))
        np.testing.assert_array_equal(np.asarray(y), np.asarray(y_resumed))


@pytest.mark.parametrize("count, replicas", [(2, 1), (1, 2), (2, 2)])
def test_shards_split_every_global_batch_between_pipelines_and_replicas(
    synthetic_config, count, replicas
):
    """Distributed training: pipeline i of `count` yields, step by step, its `replicas`
    per-replica slices of the global batch; together they are exactly the one-device batch."""
    train = open_split(synthetic_config, "train", progress=False)
    steps = steps_per_epoch(train, 16)
    clip_ids = np.zeros((len(train), 10), np.float32)
    clip_ids[:, 0] = np.arange(len(train))  # teacher logits carry each clip's index

    def clips(shard):
        batches = make_dataset(
            train, synthetic_config, teacher_logits=clip_ids, training=True, epochs=1, shard=shard
        )
        return [np.asarray(y["teacher_logits"])[:, 0].astype(int) for _, y in batches]

    single = clips(None)
    shards = [clips(Shard(count, index, replicas)) for index in range(count)]
    for shard in shards:
        assert len(shard) == steps * replicas
        assert all(len(batch) == 16 // (count * replicas) for batch in shard)
    for step in range(steps):
        parts = [shard[step * replicas + r] for shard in shards for r in range(replicas)]
        np.testing.assert_array_equal(np.concatenate(parts), single[step])
    with pytest.raises(ValueError, match="global batch 16 cannot be split over 3 pipelines"):
        make_dataset(train, synthetic_config, training=True, shard=Shard(3, 0, 1))


def test_evaluation_is_the_plain_front_end_in_order(synthetic_config):
    evaluate = open_split(synthetic_config, "evaluate", progress=False)
    batches = list(make_dataset(evaluate, synthetic_config, batch_size=32))
    labels = np.concatenate([np.asarray(y) for _, y in batches])
    np.testing.assert_array_equal(labels, [r.label for r in evaluate.records])
    expected = LogMel(synthetic_config.frontend)(np.asarray(evaluate.waveforms[:32], np.float32))
    np.testing.assert_allclose(np.asarray(batches[0][0])[..., 0], expected, atol=1e-5)


def test_teacher_logits_travel_with_their_clips(synthetic_config):
    train = open_split(synthetic_config, "train", progress=False)
    logits = np.random.default_rng(0).normal(size=(len(train), 10)).astype(np.float32)
    dataset = make_dataset(train, synthetic_config, teacher_logits=logits, batch_size=8)
    _, targets = first_batch(dataset)
    np.testing.assert_array_equal(np.asarray(targets["teacher_logits"]), logits[:8])
    with pytest.raises(ValueError, match=r"teacher logits have shape \(3, 10\)"):
        make_dataset(train, synthetic_config, teacher_logits=logits[:3])


def test_adir_auto_threshold_is_the_training_mean_energy(synthetic_config):
    from asc_keras.data.pipeline import Augmenter

    config = dataclasses.replace(synthetic_config)
    config.augment = dataclasses.replace(
        config.augment, dir=dataclasses.replace(config.augment.dir, energy_threshold="auto")
    )
    train = open_split(config, "train", progress=False)
    assert Augmenter(config, train).energy_threshold == pytest.approx(train.mean_energy)


@pytest.mark.multi_backend
def test_model_fit_consumes_the_pipeline(synthetic_config):
    from asc_keras import ds_flexinet
    from asc_keras.audio.frontend import feature_shape

    # A small front end (64 bins, hop 1000): the pipeline and fit do not depend on the size.
    small = dataclasses.replace(synthetic_config.frontend, n_mels=64, hop_length=1000)
    config = dataclasses.replace(synthetic_config, frontend=small)
    train = open_split(config, "train", progress=False)
    model = ds_flexinet("sm1", input_shape=feature_shape(config))
    assert model.input_shape == (None, 64, 32, 1)
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    dataset = make_dataset(train, config, training=True)
    history = model.fit(
        dataset, epochs=2, steps_per_epoch=steps_per_epoch(train, 16), shuffle=False, verbose=0
    )
    assert np.all(np.isfinite(history.history["loss"]))
