"""Clips/s of the full training pipeline beside the sm2 training step that consumes it.

    python tools/bench_pipeline.py [--batch 256] [--clips 2048] [--variant sm2]

Pipeline: waveform cache -> DIR/ADIR -> roll -> log-mel -> freq mask -> batch -> Freq-MixStyle,
with the paper's student settings, on random clips held in memory (no disk in the measure).
Training: `model.train_on_batch` of DS-FlexiNet on ready batches (TensorFlow backend).
"""

import os
import time

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from asc_keras import cli  # noqa: E402
from asc_keras.config import config_from_dict  # noqa: E402
from asc_keras.data.cache import WaveformCache  # noqa: E402
from asc_keras.data.tau22 import DEVICES, Record  # noqa: E402


def synthetic_cache(clips, seed=0):
    rng = np.random.default_rng(seed)
    records = [
        Record(f"audio/clip-{i}.wav", i % 10, DEVICES[i % 6] if i % 2 else "a", "x", "x-1")
        for i in range(clips)
    ]
    waveforms = (rng.normal(size=(clips, 32000)) * rng.uniform(0.01, 0.2, (clips, 1))).astype(
        np.float16
    )
    return WaveformCache.from_arrays(records, waveforms)


def bench_pipeline(cache, config, ir_folder, batch, epochs=3):
    """Median clips/s over `epochs` full epochs, after a warm-up epoch."""
    from asc_keras.data.pipeline import make_dataset, steps_per_epoch

    config.augment.dir.folder = str(ir_folder)
    steps = steps_per_epoch(cache, batch)
    iterator = iter(make_dataset(cache, config, training=True, batch_size=batch))
    rates = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        for _ in range(steps):
            next(iterator)
        rates.append(steps * batch / (time.perf_counter() - start))
    return float(np.median(rates[1:]))


def bench_training(variant, batch, steps=10):
    import keras

    from asc_keras import ds_flexinet

    model = ds_flexinet(variant)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = np.random.default_rng(0).normal(size=(batch, 256, 64, 1)).astype(np.float32)
    y = np.arange(batch) % 10
    for _ in range(3):
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times))


def main(argv=None):
    import tempfile
    from pathlib import Path

    from asc_keras.data.synthetic import make_synthetic_dataset
    from asc_keras.utils import format_table

    parser = cli.argument_parser(__doc__)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--clips", type=int, default=2048)
    parser.add_argument("--variant", default="sm2")
    args = parser.parse_args(argv)

    config = config_from_dict({"augment": {"dir": {"energy_threshold": "auto"}}})
    with tempfile.TemporaryDirectory() as tmp:
        make_synthetic_dataset(tmp, 1, 1, 1, impulse_responses=66, progress=False)
        pipeline = bench_pipeline(
            synthetic_cache(args.clips), config, Path(tmp) / "impulse_responses", args.batch
        )
    training = bench_training(args.variant, args.batch)
    rows = [
        ["tf.data pipeline (DIR/ADIR, roll, mel, mask, FMS)", f"{pipeline:.0f}"],
        [f"{args.variant} training step, batch {args.batch}", f"{training:.0f}"],
        ["pipeline / training", f"{pipeline / training:.2f}x"],
    ]
    print(
        format_table(["stage", "clips/s"], rows, title=f"bench_pipeline ({os.cpu_count()} cores)")
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
