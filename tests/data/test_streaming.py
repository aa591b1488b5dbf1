"""The streaming path (waveforms read from the memory-mapped cache file per batch) against
the in-memory path: the same batches, the same resume guarantee, and a stated choice."""

import dataclasses

import numpy as np
import pytest

from asc_keras.config import ConfigError, config_from_dict
from asc_keras.data.cache import WaveformCache
from asc_keras.data.pipeline import make_dataset, open_split, steps_per_epoch


def with_budget(config, gigabytes):
    return dataclasses.replace(
        config, data=dataclasses.replace(config.data, memory_budget_gb=gigabytes)
    )


def batches(config, **kwargs):
    """Every batch of a fresh cache object (each chooses its own reader) as numpy arrays."""
    train = open_split(config, "train", progress=False)
    dataset = make_dataset(train, config, training=True, **kwargs)
    return train.reader(config.data.memory_budget_gb), [
        (np.asarray(x), np.asarray(y)) for x, y in dataset
    ]


def assert_same_batches(a, b):
    assert len(a) == len(b) > 0
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_streamed_and_in_memory_batches_are_identical(synthetic_config):
    """Shuffle, DIR, roll, mask and Freq-MixStyle all on, two epochs: bit for bit equal."""
    memory, in_memory = batches(with_budget(synthetic_config, 1000.0), seed=3, epochs=2)
    stream, streamed = batches(with_budget(synthetic_config, 0.0), seed=3, epochs=2)
    assert not memory.streaming and stream.streaming
    assert_same_batches(in_memory, streamed)
    train = open_split(synthetic_config, "train", progress=False)
    assert len(streamed) == 2 * steps_per_epoch(train, synthetic_config.training.batch_size)


def test_a_resumed_streaming_run_sees_the_batches_of_an_uninterrupted_one(synthetic_config):
    config = with_budget(synthetic_config, 0.0)
    _, uninterrupted = batches(config, seed=4, epochs=3)
    _, resumed = batches(config, seed=4, first_epoch=2, epochs=3)
    assert_same_batches(uninterrupted[-len(resumed) :], resumed)
    assert len(resumed) * 3 == len(uninterrupted)


def test_streamed_evaluation_batches_are_the_cache_in_order(synthetic_config):
    config = with_budget(synthetic_config, 0.0)
    evaluate = open_split(config, "evaluate", progress=False)
    streamed = np.concatenate([np.asarray(x) for x, _ in make_dataset(evaluate, config)])
    in_memory_config = with_budget(synthetic_config, 1000.0)
    fresh = open_split(in_memory_config, "evaluate", progress=False)
    in_memory = np.concatenate([np.asarray(x) for x, _ in make_dataset(fresh, in_memory_config)])
    np.testing.assert_array_equal(streamed, in_memory)
    assert len(streamed) == len(evaluate)


def test_the_reader_says_which_path_runs_and_why(synthetic_config):
    train = open_split(synthetic_config, "train", progress=False)
    gigabytes = train.nbytes / 1e9
    assert train.nbytes == len(train) * 32000 * 2  # float16
    streamed = type(train.reader()).choose(train, gigabytes)  # loading needs twice that
    assert streamed.streaming
    assert "waveforms.npy" in streamed.how and "data.memory_budget_gb" in streamed.how
    kept = type(train.reader()).choose(train, gigabytes * 3)
    assert not kept.streaming and "in memory" in kept.how
    automatic = type(train.reader()).choose(train, None)
    assert "half the memory available" in automatic.how
    # The choice is made once per cache object.
    assert train.reader(0.0) is train.reader(1000.0)
    # A cache built in memory has no file to stream from.
    arrays = WaveformCache.from_arrays(train.records[:4], np.zeros((4, 32000)))
    assert not arrays.reader(0.0).streaming and "not a file cache" in arrays.reader().how


def test_a_negative_memory_budget_is_refused():
    with pytest.raises(ConfigError, match="memory_budget_gb"):
        config_from_dict({"data": {"memory_budget_gb": -1}})
