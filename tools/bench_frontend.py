"""Clips/s of the log-mel front end: the training pipeline's `LogMel` (TensorFlow, XLA) beside
the `LogMelSpectrogram` Keras layer of waveform-in models on each Keras backend.

    python tools/bench_frontend.py [--batch 64] [--reps 5]

Each backend runs in its own process (the backend is fixed when Keras loads); the layer runs
inside a one-layer Keras model's `predict_on_batch` (compiled where the backend compiles).
"""

import json
import os
import subprocess
import sys
import time

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

from asc_keras import cli  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")


def measure(backend, batch, reps):
    """(seconds per batch of the layer, and of LogMel when `backend` is tensorflow)."""
    import keras
    import numpy as np

    from asc_keras.layers import LogMelSpectrogram

    waveforms = np.random.default_rng(0).normal(0, 0.1, (batch, 32000)).astype("float32")
    inputs = keras.Input((32000,))
    model = keras.Model(inputs, LogMelSpectrogram()(inputs))
    calls = {"LogMelSpectrogram layer": lambda: model.predict_on_batch(waveforms)}
    if backend == "tensorflow":
        from asc_keras.audio import LogMel

        front_end = LogMel()
        calls["LogMel (tf.data front end, XLA)"] = lambda: np.asarray(front_end(waveforms))
    seconds = {}
    for name, call in calls.items():
        call()  # compile
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        seconds[name] = float(np.median(times))
    return seconds


def main(argv=None):
    from asc_keras.utils import format_table

    parser = cli.argument_parser(__doc__)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--backend", choices=BACKENDS, help="(internal) measure one backend")
    args = parser.parse_args(argv)
    if args.backend:  # the child process of one backend
        print(json.dumps(measure(args.backend, args.batch, args.reps)))
        return 0
    rows = []
    for backend in BACKENDS:
        done = subprocess.run(
            [sys.executable, __file__, "--backend", backend, "--batch", str(args.batch),
             "--reps", str(args.reps)],
            env={**os.environ, "KERAS_BACKEND": backend},
            capture_output=True,
            text=True,
        )  # fmt: skip
        if done.returncode != 0:
            rows.append([backend, "failed: " + done.stderr.strip().splitlines()[-1], "-", "-"])
            continue
        for name, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
            rows.append([backend, name, f"{1000 * seconds:.0f}", f"{args.batch / seconds:.0f}"])
    print(
        format_table(
            ["backend", "front end", f"ms per {args.batch} clips", "clips/s"],
            rows,
            title=f"Log-mel front end, 1 s clips at 32 kHz, {os.cpu_count()} cores",
        )
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
