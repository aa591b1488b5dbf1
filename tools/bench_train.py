"""Training samples/s of DS-FlexiNet on every Keras backend beside plain PyTorch eager.

    python tools/bench_train.py [--variant sm2] [--batch 256] [--threads 2] [--reps 5]
        [--backends tensorflow jax torch] [--norm residual] [--jit auto|on|off]
        [--deterministic]

Each backend runs in its own process (the backend is fixed at the first `import keras`); the
PyTorch references are tools/torch_reference.py (same layers, parameters and MACs), eager and
under `torch.compile` (its default mode). A sample is
one 256 x 64 log-mel clip through a full training step: forward, loss, backward, optimiser.
Warm-up steps are excluded; the figure is the median of the timed repetitions, and "reps"
their range (slowest and fastest, in % of the median).
`--deterministic` also times every Keras backend with training.deterministic's kernels
(asc_keras.training.enable_determinism) and prints what they cost.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs

WORKER_STEPS = 5
REFERENCES = {
    "torch-reference": "PyTorch eager reference",
    "torch-compile": "PyTorch torch.compile",
}


def training_batch(batch):
    """A fixed random batch of log-mel clips (channels last) and labels."""
    import numpy as np

    x = np.random.default_rng(0).normal(size=(batch, 256, 64, 1)).astype(np.float32)
    return x, np.arange(batch) % 10


def keras_step(variant, batch, norm="residual", jit="auto"):
    """A function that runs one Keras training step of DS-FlexiNet on a fixed batch."""
    import keras

    from asc_keras import ds_flexinet

    x, y = training_batch(batch)
    model = ds_flexinet(variant, norm=norm)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile={"auto": "auto", "on": True, "off": False}[jit],
    )
    return lambda: model.train_on_batch(x, y)


def seconds_per_step(step, steps):
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def worker(kind, variant, batch, threads, reps, norm="residual", jit="auto", deterministic=False):
    import numpy as np

    if kind in REFERENCES:
        import torch

        sys.path.insert(0, str(Path(__file__).parent))
        from torch_reference import ds_flexinet_torch

        torch.set_num_threads(threads)
        model = ds_flexinet_torch(variant, norm=norm)
        if kind == "torch-compile":
            model = torch.compile(model)
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)
        x, y = training_batch(batch)
        inputs = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        labels = torch.from_numpy(y)

        def step():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs), labels)
            loss.backward()
            optimizer.step()
    else:
        from asc_keras.training import enable_determinism

        if deterministic:
            enable_determinism()
        step = keras_step(variant, batch, norm, jit)

    seconds_per_step(step, 3)  # warm-up
    rates = [batch / seconds_per_step(step, WORKER_STEPS) for _ in range(reps)]
    return [float(np.median(rates)), min(rates), max(rates)]


def spread(rates):
    """(median, "-a/+b %"): the repetitions' range around their median."""
    median, slowest, fastest = rates
    return median, f"-{100 * (1 - slowest / median):.0f}/+{100 * (fastest / median - 1):.0f} %"


def thread_environment(kind, threads):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": str(threads)}
    if kind not in REFERENCES:
        env["KERAS_BACKEND"] = kind
        env["TF_NUM_INTRAOP_THREADS"] = str(threads)
        env["TF_NUM_INTEROP_THREADS"] = "1"
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=true"  # XLA takes every core
    return env


def main(argv=None):
    from asc_keras.models import NORMS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="sm2")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--norm", default="residual", choices=NORMS)
    parser.add_argument(
        "--jit", default="auto", choices=["auto", "on", "off"], help="Keras compile(jit_compile)"
    )
    parser.add_argument(
        "--deterministic", action="store_true", help="also time deterministic kernels"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, _, mode = args.worker.partition(":")
        rates = worker(
            kind,
            args.variant,
            args.batch,
            args.threads,
            args.reps,
            args.norm,
            args.jit,
            deterministic=mode == "deterministic",
        )
        print(json.dumps(rates))
        return 0

    from asc_keras.utils import format_table

    results, spreads = {}, {}
    kinds = list(REFERENCES)
    for backend in args.backends:
        kinds += [backend, f"{backend}:deterministic"] if args.deterministic else [backend]
    for kind in kinds:
        command = [
            sys.executable,
            __file__,
            "--worker",
            kind,
            "--variant",
            args.variant,
            "--batch",
            str(args.batch),
            "--threads",
            str(args.threads),
            "--reps",
            str(args.reps),
            "--norm",
            args.norm,
            "--jit",
            args.jit,
        ]
        done = subprocess.run(
            command,
            env=thread_environment(kind.partition(":")[0], args.threads),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{kind} benchmark failed:\n{done.stderr[-2000:]}")
        results[kind], spreads[kind] = spread(json.loads(done.stdout.strip().splitlines()[-1]))
    eager, compiled = results["torch-reference"], results["torch-compile"]
    rows = []
    for kind, rate in results.items():
        backend, _, mode = kind.partition(":")
        name = REFERENCES.get(kind, f"Keras/{backend}")
        cost = f"{100 * (1 - rate / results[backend]):.1f} %" if mode else "-"
        rows.append(
            [
                f"{name}{', deterministic' if mode else ''}",
                f"{rate:.0f}",
                spreads[kind],
                f"{rate / eager:.2f}x",
                f"{rate / compiled:.2f}x",
                cost,
            ]
        )
    print(
        format_table(
            [
                "backend",
                "samples/s",
                "reps",
                "vs PyTorch",
                "vs torch.compile",
                "determinism costs",
            ],
            rows,
            title=f"training step, {args.variant} ({args.norm} norm, jit_compile {args.jit}), "
            f"batch {args.batch}, {args.threads} threads",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
