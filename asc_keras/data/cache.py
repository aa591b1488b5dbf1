"""Decoded, resampled waveforms of a split, stored once so that epochs never re-decode WAVs.

A cache folder holds `waveforms.npy` (float16, clips x samples, memory-mapped when read),
`records.tsv` (the clip order) and `manifest.json`, written last: a folder without a manifest
is unfinished and never read. Preparation writes into `waveforms.partial.npy` and records its
progress after every chunk, so an interrupted run resumes where it stopped.
"""

import concurrent.futures
import csv
import dataclasses
import fcntl
import hashlib
import json
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asc_keras.audio.io import load_audio
from asc_keras.data.tau22 import DatasetError, Record, read_split
from asc_keras.utils import atomic_path, atomic_write_text

CACHE_FORMAT = 1
CHUNK = 256


@dataclasses.dataclass
class WaveformCache:
    records: list
    waveforms: np.ndarray  # (clips, samples), float16 on disk or any float in memory
    sample_rate: int
    mean_energy: float  # mean over clips of sum(x ** 2), the "auto" ADIR threshold

    @classmethod
    def from_arrays(cls, records, waveforms, sample_rate=32000):
        """An in-memory cache (tests, small experiments)."""
        waveforms = np.asarray(waveforms, np.float32)
        if len(records) != len(waveforms):
            raise ValueError(f"{len(records)} records but {len(waveforms)} waveforms")
        energy = float(np.mean(np.sum(np.square(waveforms, dtype=np.float64), axis=1)))
        return cls(list(records), waveforms, sample_rate, energy)

    @property
    def filenames(self):
        return [r.filename for r in self.records]

    def as_tensor(self):
        """The waveforms as one non-trainable float16 `tf.Variable`, made once per cache.

        tf.data gathers batches from it with TensorFlow ops alone: no Python (and no GIL) in
        the parallel pipeline. A Python reader there can deadlock when Keras drops an
        iterator while a read is in flight. It takes 64 KB of memory per clip (8.9 GB for the
        full TAU22 training split) and is filled chunk by chunk from the memory-mapped file.
        """
        if getattr(self, "_tensor", None) is None:
            import tensorflow as tf

            variable = tf.Variable(
                tf.zeros(self.waveforms.shape, tf.float16), trainable=False, name="waveforms"
            )
            for start in range(0, len(self.waveforms), 4096):
                chunk = np.asarray(self.waveforms[start : start + 4096], np.float16)
                variable[start : start + len(chunk)].assign(chunk)
            self._tensor = variable
        return self._tensor

    def __len__(self):
        return len(self.records)


def fingerprint(records, sample_rate, duration):
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{sample_rate}|{duration}".encode())
    for r in records:
        digest.update(f"|{r.filename}:{r.label}".encode())
    return digest.hexdigest()[:16]


def cache_directory(cache_root, split, sample_rate):
    return Path(cache_root) / f"{split}-{sample_rate}hz"


def _write_records(path, records):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow([field.name for field in dataclasses.fields(Record)])
        for r in records:
            writer.writerow(dataclasses.astuple(r))


def _read_records(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [
        Record(r["filename"], int(r["label"]), r["device"], r["city"], r["identifier"])
        for r in rows
    ]


def open_cache(directory):
    """Opens a finished cache folder (memory-mapped, read-only)."""
    directory = Path(directory)
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        raise DatasetError(
            f"{directory} is not a finished waveform cache (no manifest.json); "
            f"run tools/prepare_dataset.py"
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != CACHE_FORMAT:
        raise DatasetError(
            f"{manifest_path}: cache format {manifest.get('format')!r} is not "
            f"{CACHE_FORMAT}; delete the folder and prepare it again"
        )
    waveforms = np.load(directory / "waveforms.npy", mmap_mode="r")
    records = _read_records(directory / "records.tsv")
    if waveforms.shape != (len(records), manifest["samples"]):
        raise DatasetError(
            f"{directory}: waveforms.npy has shape {waveforms.shape}, expected "
            f"{(len(records), manifest['samples'])}; delete the folder and prepare it again"
        )
    return WaveformCache(records, waveforms, manifest["sample_rate"], manifest["mean_energy"])


def _load_chunk(root, records, sample_rate, duration, workers):
    paths = [Path(root) / r.filename for r in records]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: load_audio(p, sample_rate, duration), paths))


def prepare_cache(
    root, split, cache_root, sample_rate=32000, duration=1.0, workers=None, progress=True
):
    """Decodes and resamples every clip of `split` into a cache folder; resumes if interrupted.

    Returns the opened cache. An existing finished cache for the same files is reused.
    """
    records = read_split(root, split)
    directory = cache_directory(cache_root, split, sample_rate)
    key = fingerprint(records, sample_rate, duration)
    if _finished(directory, key):
        return open_cache(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Several processes (the workers of a multi-worker run) may prepare the same cache: one
    # builds it while the others wait, then they all open the finished cache.
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _finished(directory, key):
            return open_cache(directory)
        return _build_cache(
            root, split, directory, records, key, sample_rate, duration, workers, progress
        )


def _finished(directory, key):
    """Whether `directory` holds a finished cache of these files (a stale one is unmarked)."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        return False
    if json.loads(manifest_path.read_text()).get("fingerprint") == key:
        return True
    manifest_path.unlink()  # stale: other files or settings; rebuilt by the caller
    return False


def _build_cache(root, split, directory, records, key, sample_rate, duration, workers, progress):
    manifest_path = directory / "manifest.json"

    missing = [r.filename for r in records if not (Path(root) / r.filename).is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} of {len(records)} audio files listed for split {split!r} are "
            f"missing under {root}, e.g. {missing[:3]}"
        )

    samples = int(round(sample_rate * duration))
    partial = directory / "waveforms.partial.npy"
    progress_path = directory / "progress.json"
    done = 0
    if partial.is_file() and progress_path.is_file():
        state = json.loads(progress_path.read_text())
        if state.get("fingerprint") == key:
            done = state["done"]
    if done:
        waveforms = np.load(partial, mmap_mode="r+")
    else:
        waveforms = np.lib.format.open_memmap(
            partial, mode="w+", dtype=np.float16, shape=(len(records), samples)
        )
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(records), initial=done, desc=f"caching {split}", disable=not progress)
    for start in range(done, len(records), CHUNK):
        chunk = records[start : start + CHUNK]
        waveforms[start : start + len(chunk)] = _load_chunk(
            root, chunk, sample_rate, duration, workers
        )
        waveforms.flush()
        atomic_write_text(
            progress_path, json.dumps({"fingerprint": key, "done": start + len(chunk)})
        )
        bar.update(len(chunk))
    bar.close()

    energies = [
        np.sum(np.square(waveforms[i : i + CHUNK], dtype=np.float64), axis=1)
        for i in range(0, len(records), CHUNK)
    ]
    del waveforms
    os.replace(partial, directory / "waveforms.npy")
    _write_records(directory / "records.tsv", records)
    manifest = {
        "format": CACHE_FORMAT,
        "fingerprint": key,
        "split": split,
        "clips": len(records),
        "sample_rate": sample_rate,
        "duration": duration,
        "samples": samples,
        "mean_energy": float(np.mean(np.concatenate(energies))),
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
    progress_path.unlink(missing_ok=True)
    return open_cache(directory)
