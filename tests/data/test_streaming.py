"""The streaming path (each batch reads its clips' files) against the in-memory path: the same
batches, the same resume guarantee, and a stated choice; the per-clip files themselves."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from asc_keras.config import ConfigError, config_from_dict
from asc_keras.data import cache as cache_module
from asc_keras.data.cache import WaveformCache, clip_file, write_clip_files
from asc_keras.data.pipeline import make_dataset, open_split, steps_per_epoch
from asc_keras.data.tau22 import DatasetError


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
    assert "per-clip files" in streamed.how and "data.memory_budget_gb" in streamed.how
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


@pytest.fixture
def train_cache_dir(synthetic_config, tmp_path):
    """A private copy of the synthetic training cache (other tests share the original)."""
    source = Path(open_split(synthetic_config, "train", progress=False).waveforms.filename).parent
    copy = tmp_path / "train-cache"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("clips", ".lock"))
    return copy


class Killed(Exception):
    pass


def test_an_interrupted_clip_file_write_resumes_and_ends_with_the_cache_rows(
    train_cache_dir, monkeypatch
):
    """The write dies half-way (an error on the 40th file, as a kill would leave it); the next
    call writes only what was not recorded as done, and every file holds its cache row."""
    monkeypatch.setattr(cache_module, "CLIP_CHUNK", 16)
    real_write, writes, killed = Path.write_bytes, [], []

    def failing_write(path, data):
        writes.append(path)
        if len(writes) == 40 and not killed:
            killed.append(path)
            raise Killed
        return real_write(path, data)

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(Killed):
        write_clip_files(train_cache_dir, progress=False)
    clips = train_cache_dir / "clips"
    assert json.loads((clips / "progress.json").read_text())["done"] == 32
    assert not (clips / "done.json").exists()
    writes.clear()
    assert write_clip_files(train_cache_dir, progress=False) == clips
    waveforms = np.load(train_cache_dir / "waveforms.npy", mmap_mode="r")
    assert len(writes) == len(waveforms) - 32  # resumed at the last recorded chunk
    for i in range(len(waveforms)):
        np.testing.assert_array_equal(np.fromfile(clip_file(clips, i), "<f2"), waveforms[i])
    assert not (clips / "progress.json").exists()
    writes.clear()
    write_clip_files(train_cache_dir, progress=False)  # done: nothing rewritten
    assert writes == []


def test_clip_files_of_another_cache_are_rewritten(train_cache_dir):
    clips = write_clip_files(train_cache_dir, progress=False)
    manifest = train_cache_dir / "manifest.json"
    rebuilt = json.loads(manifest.read_text()) | {"fingerprint": "another"}
    manifest.write_text(json.dumps(rebuilt))
    waveforms = np.load(train_cache_dir / "waveforms.npy", mmap_mode="r+")
    waveforms[0] = 0.5
    waveforms.flush()
    write_clip_files(train_cache_dir, progress=False)
    np.testing.assert_array_equal(np.fromfile(clip_file(clips, 0), "<f2"), 0.5)
    assert json.loads((clips / "done.json").read_text())["fingerprint"] == "another"


def test_too_little_disk_for_clip_files_is_a_clear_error(train_cache_dir, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 1000))
    with pytest.raises(DatasetError, match=r"per-clip files in .*clips.*free disk space"):
        write_clip_files(train_cache_dir, progress=False)
    assert list((train_cache_dir / "clips").iterdir()) == []
