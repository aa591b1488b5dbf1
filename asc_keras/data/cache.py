"""Decoded, resampled waveforms of a split, stored once so that epochs never re-decode WAVs.

A cache folder holds `waveforms.npy` (float16, clips x samples, memory-mapped when read),
`records.tsv` (the clip order), `files.tsv` (size and modification time of every source file)
and `manifest.json`, written last: a folder without a manifest is unfinished and never read.
Preparation writes into `waveforms.partial.npy` and records its progress after every chunk, so
an interrupted run resumes where it stopped. A cache that is streamed (too large for the memory
budget) also gets `clips/`, one headerless float16 file per clip, written once on first use.

The cache's key covers the settings, the file names and labels, and the size and modification
time of every audio file: a changed, replaced or touched WAV makes the cache stale, and it is
rebuilt with a message naming the files that changed.
"""

import concurrent.futures
import csv
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asc_keras.audio.io import load_audio
from asc_keras.data.tau22 import DatasetError, Record, read_split
from asc_keras.utils import atomic_path, atomic_write_text, writing

CACHE_FORMAT = 1
CHUNK = 256

STORED = np.float16  # the sample type on disk: half the size of float32
CLIPS_PER_FOLDER = 1000  # of the streamed layout, clips/0012/0012345.f16
CLIP_CHUNK = 1024  # per-clip files written between two progress records


@dataclasses.dataclass
class WaveformCache:
    records: list
    waveforms: np.ndarray  # (clips, samples), float16 on disk or any float in memory
    sample_rate: int
    mean_energy: float  # mean over clips of sum(x ** 2), the "auto" ADIR threshold
    # Of a `subset`: each record's row in `waveforms` (those of the cache it was taken from).
    rows: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    whole: "WaveformCache | None" = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_arrays(cls, records, waveforms, sample_rate=32000):
        """An in-memory cache (tests, small experiments)."""
        waveforms = np.asarray(waveforms, np.float32)
        if len(records) != len(waveforms):
            raise ValueError(f"{len(records)} records but {len(waveforms)} waveforms")
        energy = float(np.mean(np.sum(np.square(waveforms, dtype=np.float64), axis=1)))
        return cls(list(records), waveforms, sample_rate, energy)

    def subset(self, indices):
        """The clips `indices` (in that order) of this cache, reading from its waveforms
        (no copy; in memory, its tf.Variable) and keeping its `mean_energy`: models trained
        on a subset (the folds of `teachers.folds`) take the split's ADIR threshold."""
        indices = np.asarray(indices, np.int64)
        whole = self.whole or self
        rows = indices if self.rows is None else self.rows[indices]
        records = [self.records[i] for i in indices]
        return dataclasses.replace(self, records=records, rows=rows, whole=whole)

    @property
    def filenames(self):
        return [r.filename for r in self.records]

    @property
    def nbytes(self):
        """Bytes of the waveforms as float16, as the in-memory path holds them."""
        return int(np.prod(self.waveforms.shape)) * np.dtype(STORED).itemsize

    def reader(self, memory_budget_gb=None):
        """The `WaveformReader` of this cache, chosen once: in memory when loading its
        waveforms (twice their size) fits `memory_budget_gb` (None: half the memory available
        now), else streamed from per-clip files. Caches made in memory
        (`from_arrays`) are always in memory."""
        if getattr(self, "_reader", None) is None:
            if self.whole is not None:  # a subset reads its rows of the whole cache
                whole = self.whole.reader(memory_budget_gb)
                self._reader = dataclasses.replace(whole, rows=self.rows)
            else:
                self._reader = WaveformReader.choose(self, memory_budget_gb)
        return self._reader

    def as_tensor(self):
        """The waveforms as one non-trainable float16 `tf.Variable`, made once per cache.

        tf.data gathers batches from it with TensorFlow ops alone: no Python (and no GIL) in
        the parallel pipeline. A Python reader there can deadlock when Keras drops an
        iterator while a read is in flight. It takes 64 KB of memory per clip (8.9 GB for the
        full TAU22 training split) and is filled chunk by chunk from the memory-mapped file.
        """
        if self.whole is not None:  # a subset's rows are `rows` of the whole one's
            return self.whole.as_tensor()
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


def available_memory_bytes():
    """The memory the kernel says new allocations can get (MemAvailable), in bytes."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _gigabytes(count):
    return f"{count / 1e9:.2f} GB"


@dataclasses.dataclass
class WaveformReader:
    """Where tf.data reads a cache's rows from, with TensorFlow ops only (no Python, no GIL).

    In memory: one float16 `tf.Variable` (`WaveformCache.as_tensor`), 64 KB per clip; while
    it is filled TensorFlow holds a second copy, so loading needs twice the cache's size.
    Streamed: the cache's rows are also written once as one file per clip (`clips/`, see
    `write_clip_files`) and each batch reads its clips' files (`tf.io.read_file`, served by
    the page cache after the first epoch): the process holds only the batches in flight.
    (Mapping `waveforms.npy` instead, with TensorFlow's ImmutableConst op, made the process
    hold an anonymous copy of the whole file for a moment on its first run.) Both paths give
    the same float16 values, hence identical batches.
    """

    cache: WaveformCache
    streaming: bool
    how: str  # one line: which path and why
    clips: Path | None = None  # the per-clip files' folder, when streaming
    rows: np.ndarray | None = None  # of a subset's reader: its rows of the cache

    @classmethod
    def choose(cls, cache, memory_budget_gb=None, progress=True):
        need = 2 * cache.nbytes  # a second copy while the variable is filled
        mapped = isinstance(cache.waveforms, np.memmap) and cache.waveforms.filename
        if memory_budget_gb is None:
            budget = available_memory_bytes() // 2
            source = "half the memory available now; set data.memory_budget_gb to choose"
        else:
            budget = int(memory_budget_gb * 1e9)
            source = "data.memory_budget_gb"
        size = f"{_gigabytes(cache.nbytes)}, {_gigabytes(need)} while loading"
        if mapped and need > budget:
            clips = write_clip_files(Path(cache.waveforms.filename).parent, progress=progress)
            how = (
                f"waveforms streamed from the per-clip files in {clips} (in memory they would "
                f"need {size}, above the {_gigabytes(budget)} budget: {source})"
            )
            return cls(cache, True, how, clips)
        cache.as_tensor()  # made now, eagerly: never inside a traced tf.data function
        if not mapped:
            return cls(cache, False, f"waveforms in memory ({size}; not a file cache)")
        how = f"{size}, within the {_gigabytes(budget)} budget: {source}"
        return cls(cache, False, f"waveforms in memory ({how})")

    def gather(self, index):
        """float16 rows `index` (a 1-D int64 tensor) of the cache, (len(index), samples)."""
        import tensorflow as tf

        if self.rows is not None:
            index = tf.gather(tf.constant(self.rows, tf.int64), index)
        if not self.streaming:
            return tf.gather(self.cache.as_tensor(), index)
        names = tf.strings.join(
            [
                f"{self.clips}{os.sep}",
                tf.strings.as_string(index // CLIPS_PER_FOLDER, width=4, fill="0"),
                os.sep,
                tf.strings.as_string(index, width=7, fill="0"),
                ".f16",
            ]
        )
        contents = tf.map_fn(tf.io.read_file, names, fn_output_signature=tf.string)
        rows = tf.io.decode_raw(contents, tf.float16, little_endian=True)
        return tf.reshape(rows, [-1, self.cache.waveforms.shape[1]])


def clip_file(clips, index):
    """The path of clip `index`'s file in a cache's `clips/` folder."""
    return Path(clips) / f"{index // CLIPS_PER_FOLDER:04d}" / f"{index:07d}.f16"


def write_clip_files(directory, progress=True):
    """Writes the finished cache `directory`'s rows as one file per clip into
    `directory/clips` (little-endian float16, no header), unless done; returns that folder.

    Written once per cache, under the cache's lock (the workers of a multi-worker run wait
    for one writer), in chunks with the progress recorded after each, so an interrupted
    write resumes; `clips/done.json`, written last, carries the cache's fingerprint, so the
    files of a rebuilt cache are never read. Too little free disk is an error naming the
    folder, before anything is written.
    """
    directory = Path(directory)
    clips = directory / "clips"
    key = json.loads((directory / "manifest.json").read_text())["fingerprint"]
    done_path, progress_path = clips / "done.json", clips / "progress.json"

    def finished():
        return done_path.is_file() and json.loads(done_path.read_text()).get("fingerprint") == key

    if finished():
        return clips
    with writing(clips, "the per-clip files", "set data.cache_dir to a writable folder"):
        clips.mkdir(exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if finished():
            return clips
        waveforms = np.load(directory / "waveforms.npy", mmap_mode="r")
        done = 0
        if progress_path.is_file():
            state = json.loads(progress_path.read_text())
            done = state["done"] if state.get("fingerprint") == key else 0
        row_bytes = waveforms.shape[1] * np.dtype(STORED).itemsize
        needed = (len(waveforms) - done) * row_bytes
        free = shutil.disk_usage(clips).free
        if needed > free:
            raise DatasetError(
                f"streaming the cache {directory} needs {_gigabytes(needed)} for its per-clip "
                f"files in {clips}, but only {_gigabytes(free)} is free there; free disk "
                f"space, set data.cache_dir to a larger disk or raise data.memory_budget_gb"
            )
        bar = tqdm(total=len(waveforms), initial=done, desc="per-clip files", disable=not progress)
        with writing(clips, "the per-clip files", "set data.cache_dir to a writable folder"):
            for start in range(done, len(waveforms), CLIP_CHUNK):
                rows = np.asarray(waveforms[start : start + CLIP_CHUNK], dtype="<f2")
                for offset, row in enumerate(rows):
                    path = clip_file(clips, start + offset)
                    path.parent.mkdir(exist_ok=True)
                    path.write_bytes(row.tobytes())
                atomic_write_text(
                    progress_path, json.dumps({"fingerprint": key, "done": start + len(rows)})
                )
                bar.update(len(rows))
            bar.close()
            atomic_write_text(done_path, json.dumps({"fingerprint": key, "clips": len(waveforms)}))
            progress_path.unlink(missing_ok=True)
    return clips


def file_stats(root, records):
    """(size, modification time in ns) of every record's audio file; missing ones are an
    error naming them."""
    stats, missing = [], []
    for r in records:
        try:
            stat = os.stat(Path(root) / r.filename)
        except FileNotFoundError:
            missing.append(r.filename)
            continue
        stats.append((stat.st_size, stat.st_mtime_ns))
    if missing:
        raise DatasetError(
            f"{len(missing)} of {len(records)} audio files listed are missing under {root}, "
            f"e.g. {missing[:3]}"
        )
    return stats


def fingerprint(records, stats, sample_rate, duration):
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{sample_rate}|{duration}".encode())
    for r, (size, mtime) in zip(records, stats):
        digest.update(f"|{r.filename}:{r.label}:{size}:{mtime}".encode())
    return digest.hexdigest()[:16]


def _write_stats(path, records, stats):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filename", "size", "mtime_ns"])
        writer.writerows((r.filename, *s) for r, s in zip(records, stats))


def changed_files(directory, records, stats):
    """What differs between a cache's `files.tsv` and the files now: a short description."""
    try:
        with open(Path(directory) / "files.tsv", newline="") as f:
            old = {
                row["filename"]: (int(row["size"]), int(row["mtime_ns"]))
                for row in csv.DictReader(f, delimiter="\t")
            }
    except (OSError, KeyError, ValueError):
        return "the files it was made from are not recorded"
    now = {r.filename: s for r, s in zip(records, stats)}
    changed = [name for name, s in now.items() if name in old and tuple(old[name]) != s]
    added = [name for name in now if name not in old]
    removed = [name for name in old if name not in now]
    parts = [
        f"{len(names)} {what}, e.g. {names[:3]}"
        for names, what in ((changed, "changed"), (added, "added"), (removed, "removed"))
        if names
    ]
    return "; ".join(parts) or "the settings or labels changed"


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
    stats = file_stats(root, records)
    directory = cache_directory(cache_root, split, sample_rate)
    key = fingerprint(records, stats, sample_rate, duration)
    if _finished(directory, key):
        return open_cache(directory)
    with writing(directory, "the waveform cache", "set data.cache_dir to a writable folder"):
        directory.mkdir(parents=True, exist_ok=True)
        lock = open(directory / ".lock", "w")
    # Several processes (the workers of a multi-worker run) may prepare the same cache: one
    # builds it while the others wait, then they all open the finished cache.
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _finished(
            directory, key, describe_change=lambda: changed_files(directory, records, stats)
        ):
            return open_cache(directory)
        return _build_cache(
            root,
            split,
            directory,
            records=records,
            stats=stats,
            key=key,
            sample_rate=sample_rate,
            duration=duration,
            workers=workers,
            progress=progress,
        )


def _finished(directory, key, describe_change=None):
    """Whether `directory` holds a finished cache of these files. A stale one is unmarked
    (and rebuilt by the caller), saying what changed when `describe_change` is given."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        return False
    if json.loads(manifest_path.read_text()).get("fingerprint") == key:
        return True
    if describe_change is not None:
        print(f"waveform cache {directory} is stale ({describe_change()}); rebuilding it")
        manifest_path.unlink()
    return False


def _build_cache(
    root, split, directory, *, records, stats, key, sample_rate, duration, workers, progress
):
    samples = int(round(sample_rate * duration))
    partial = directory / "waveforms.partial.npy"
    progress_path = directory / "progress.json"
    done = 0
    if partial.is_file() and progress_path.is_file():
        state = json.loads(progress_path.read_text())
        if state.get("fingerprint") == key:
            done = state["done"]
    # The per-clip files of the cache this one replaces are stale (their fingerprint says so).
    shutil.rmtree(directory / "clips", ignore_errors=True)
    if done:
        waveforms = np.load(partial, mmap_mode="r+")
    else:
        waveforms = np.lib.format.open_memmap(
            partial, mode="w+", dtype=STORED, shape=(len(records), samples)
        )
    allocate(partial, "waveform cache")
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
    _write_stats(directory / "files.tsv", records, stats)
    finish_cache(
        directory,
        records,
        fingerprint=key,
        split=split,
        sample_rate=sample_rate,
        duration=duration,
        mean_energy=float(np.mean(np.concatenate(energies))),
    )
    progress_path.unlink(missing_ok=True)
    return open_cache(directory)


def allocate(path, what):
    """Reserves the disk blocks of the (sparse) file `path` before it is written through a
    memory map: a disk without room is then an `OutputError` here, never a SIGBUS later."""
    size = os.path.getsize(path)
    with writing(path, what, hint=f"it needs {size / 1e6:.0f} MB"):
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            # A file system without fallocate: at least refuse what cannot fit.
            if shutil.disk_usage(os.path.dirname(path) or ".").free < size:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from error
        finally:
            os.close(fd)


def finish_cache(directory, records, *, fingerprint, split, sample_rate, duration, mean_energy):
    """Marks the cache folder whose waveforms.npy holds `records` finished: records.tsv,
    then manifest.json, written last (a folder without it is never read)."""
    _write_records(directory / "records.tsv", records)
    manifest = {
        "format": CACHE_FORMAT,
        "fingerprint": fingerprint,
        "split": split,
        "clips": len(records),
        "sample_rate": sample_rate,
        "duration": duration,
        "samples": int(round(sample_rate * duration)),
        "mean_energy": mean_energy,
    }
    atomic_write_text(directory / "manifest.json", json.dumps(manifest, indent=2))
