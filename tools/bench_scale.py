"""Training at TAU22 scale: memory and speed of the in-memory and streaming waveform paths.

    python tools/bench_scale.py [--percent 5 25 100] [--steps 8] [--batch 256]
        [--paths memory stream] [--wav-clips 600] [--workdir DIR]

For each share of the TAU22 development training split (139,620 one-second clips; 5 %, 25 %,
100 % as the DCASE24 splits), the tool writes a waveform cache of that many clips directly
(coloured noise per device in the cache format: no WAVs needed) and, for each waveform path,
runs in a fresh process (the streaming path's per-clip files are written first, timed):
- pipeline: the sm2 training pipeline of configs/sm2.yaml (ADIR, roll, log-mel, mask,
  Freq-MixStyle) alone: clips/s and peak resident memory (VmHWM);
- train: sm2 `model.fit` on that pipeline: seconds from opening the cache to the end of the
  first training step (the in-memory path loads the waveforms first), training clips/s over
  `--steps` steps after two warm-up steps, and peak resident memory of the process.
Cache preparation (decode + resample on every core, as tools/prepare_dataset.py runs it) is
measured once on `--wav-clips` synthetic 44.1 kHz WAVs. Everything is written under a
temporary folder in `--workdir` (default: the system's temporary folder; the 100 % cache is
8.9 GB, and as many again for its per-clip files), removed at the end, also on error or Ctrl-C.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs

TAU22_TRAIN_CLIPS = 139_620
SAMPLES = 32_000
WARMUP_STEPS = 2
REPO = Path(__file__).resolve().parent.parent


def peak_resident_bytes():
    """The process's peak resident set size (VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def write_noise_cache(directory, clips, seed=0):
    """A finished waveform cache of `clips` one-second clips of device-coloured noise."""
    import numpy as np
    import scipy.signal

    from asc_keras.data import cache
    from asc_keras.data.tau22 import CLASSES, DEVICES, Record

    directory.mkdir(parents=True)
    waveforms = np.lib.format.open_memmap(
        directory / "waveforms.npy", mode="w+", dtype=cache.STORED, shape=(clips, SAMPLES)
    )
    rng = np.random.default_rng(seed)
    devices = [DEVICES[i % len(DEVICES)] for i in range(clips)]
    energy = 0.0
    for start in range(0, clips, 2048):
        stop = min(start + 2048, clips)
        noise = rng.standard_normal((stop - start, SAMPLES), np.float32) * 0.05
        # A one-pole low-pass per device: each device colours its noise differently.
        pole = 0.1 + 0.8 * (np.arange(start, stop) % len(DEVICES)) / len(DEVICES)
        for value in np.unique(pole):
            rows = pole == value
            noise[rows] = scipy.signal.lfilter([1 - value], [1, -value], noise[rows], axis=1)
        waveforms[start:stop] = noise
        energy += float(np.sum(np.square(waveforms[start:stop], dtype=np.float64)))
    waveforms.flush()
    del waveforms
    records = [
        Record(f"audio/bench-{i}-{devices[i]}.wav", i % len(CLASSES), devices[i], "bench", str(i))
        for i in range(clips)
    ]
    cache.finish_cache(
        directory,
        records,
        fingerprint="bench_scale",
        split="train",
        sample_rate=SAMPLES,
        duration=1.0,
        mean_energy=energy / clips,
    )


def measure_preparation(workdir, clips):
    """Cache preparation clips/s on synthetic WAVs: one thread, and every core."""
    from asc_keras.data.cache import prepare_cache
    from asc_keras.data.synthetic import make_synthetic_dataset

    root = workdir / "wavs"
    per_scene = max(1, clips // 10 // 2)  # half from device a, half spread over b, c, s1-s3
    make_synthetic_dataset(
        root,
        train_clips_a=per_scene,
        train_clips_other=max(1, per_scene // 5),
        evaluate_clips=1,
        impulse_responses=12,
        progress=False,
    )
    rates = {}
    for workers in (1, os.cpu_count() or 1):
        cache_root = workdir / f"prepared-{workers}"
        start = time.perf_counter()
        cache = prepare_cache(root, "train", cache_root, workers=workers, progress=False)
        rates[workers] = len(cache) / (time.perf_counter() - start)
        shutil.rmtree(cache_root)
    return root, len(cache), rates


def time_clip_files(cache_dir):
    """Seconds to write the streaming path's per-clip files (once per cache)."""
    from asc_keras.data.cache import write_clip_files

    start = time.perf_counter()
    write_clip_files(cache_dir, progress=False)
    return time.perf_counter() - start


def child(kind, cache_dir, wav_root, path, steps, batch):
    """One measurement in this (fresh) process; prints one JSON line."""
    import dataclasses

    import keras

    from asc_keras.audio.frontend import feature_shape
    from asc_keras.config import load_config
    from asc_keras.data.cache import open_cache
    from asc_keras.data.pipeline import make_dataset, steps_per_epoch
    from asc_keras.models import build_model
    from asc_keras.training import build_optimizer

    config = load_config(REPO / "configs" / "sm2.yaml")
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(
            config.data, root=str(wav_root), memory_budget_gb=1e6 if path == "memory" else 0.0
        ),
        augment=dataclasses.replace(
            config.augment,
            dir=dataclasses.replace(
                config.augment.dir, folder=str(Path(wav_root) / "impulse_responses")
            ),
        ),
        training=dataclasses.replace(config.training, batch_size=batch),
    )
    start = time.perf_counter()
    cache = open_cache(cache_dir)
    reader = cache.reader(config.data.memory_budget_gb)
    dataset = make_dataset(cache, config, training=True)
    result = {"kind": kind, "path": path, "clips": len(cache), "how": reader.how}
    total = WARMUP_STEPS + steps
    if kind == "pipeline":
        times = []
        for _ in dataset.take(total):
            times.append(time.perf_counter())
    else:
        model = build_model(config.model, feature_shape(config))
        model.compile(
            optimizer=build_optimizer(config.training, steps_per_epoch(cache, batch)),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        times = []
        stamp = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: times.append(time.perf_counter())
        )
        model.fit(dataset, steps_per_epoch=total, epochs=1, callbacks=[stamp], verbose=0)
    result["first_step_s"] = times[0] - start
    result["clips_per_s"] = steps * batch / (times[-1] - times[WARMUP_STEPS - 1])
    result["peak_rss_gb"] = peak_resident_bytes() / 1e9
    result["cache_gb"] = cache.nbytes / 1e9
    print("RESULT " + json.dumps(result), flush=True)


def run_child(kind, cache_dir, wav_root, path, steps, batch):
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--cache",
        str(cache_dir),
        "--wav-root",
        str(wav_root),
        "--child-path",
        path,
        "--steps",
        str(steps),
        "--batch",
        str(batch),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"error: the {kind} measurement ({path}, {cache_dir}) failed")
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--percent", type=float, nargs="+", default=[5, 25, 100])
    parser.add_argument(
        "--paths", nargs="+", choices=("memory", "stream"), default=["memory", "stream"]
    )
    parser.add_argument("--steps", type=int, default=8, help="timed steps after 2 warm-up")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--wav-clips", type=int, default=600)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--child", choices=("pipeline", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--wav-root", help=argparse.SUPPRESS)
    parser.add_argument("--child-path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.cache, args.wav_root, args.child_path, args.steps, args.batch)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.workdir))
    try:
        wav_root, wav_clips, rates = measure_preparation(workdir, args.wav_clips)
        cores = max(rates)
        print(
            f"cache preparation ({wav_clips} synthetic 44.1 kHz WAVs -> 32 kHz float16): "
            f"{rates[1]:.0f} clips/s on 1 thread, {rates[cores]:.0f} clips/s on {cores}; "
            f"the full training split ({TAU22_TRAIN_CLIPS:,} clips) in about "
            f"{TAU22_TRAIN_CLIPS / rates[cores] / 60:.1f} min",
            flush=True,
        )
        rows = []
        for percent in args.percent:
            clips = round(TAU22_TRAIN_CLIPS * percent / 100)
            cache_dir = workdir / f"cache-{percent:g}"
            start = time.perf_counter()
            write_noise_cache(cache_dir, clips)
            print(
                f"{percent:g} %: wrote {clips:,} clips in {time.perf_counter() - start:.0f} s",
                flush=True,
            )
            for path in args.paths:
                row = {"percent": percent, "clips": clips, "path": path, "clip_files_s": None}
                if path == "stream":
                    row["clip_files_s"] = time_clip_files(cache_dir)
                    print(f"  per-clip files written in {row['clip_files_s']:.0f} s", flush=True)
                for kind in ("pipeline", "train"):
                    result = run_child(kind, cache_dir, wav_root, path, args.steps, args.batch)
                    row[kind] = result
                    print(f"  {path:6} {kind:8} {json.dumps(result)}", flush=True)
                rows.append(row)
            shutil.rmtree(cache_dir)
        print()
        print(format_table(rows, args.batch))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def format_table(rows, batch):
    header = (
        f"{'split':>6} {'clips':>8} {'cache GB':>8} {'path':>7} {'pipeline clips/s':>16} "
        f"{'pipeline peak GB':>16} {'first step s':>12} {'train clips/s':>13} "
        f"{'train peak GB':>13} {'clip files s':>12}"
    )
    lines = [f"sm2, configs/sm2.yaml augmentations, batch {batch}", header]
    for row in rows:
        pipeline, train = row["pipeline"], row["train"]
        lines.append(
            f"{row['percent']:>5g}% {row['clips']:>8,} {train['cache_gb']:>8.2f} "
            f"{row['path']:>7} {pipeline['clips_per_s']:>16.0f} "
            f"{pipeline['peak_rss_gb']:>16.2f} {train['first_step_s']:>12.1f} "
            f"{train['clips_per_s']:>13.0f} {train['peak_rss_gb']:>13.2f} "
            + (f"{row['clip_files_s']:>12.0f}" if row["clip_files_s"] is not None else f"{'-':>12}")
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
