"""Where a DS-FlexiNet training step spends its time, on one Keras backend.

    python tools/profile_train.py [--backend tensorflow|jax|torch] [--variant sm2]
        [--norm residual] [--batch 256] [--steps 2] [--top 15] [--reference]

Times a step as tools/bench_train.py does (2 threads), then profiles `--steps` steps with the
backend's own profiler (TensorFlow's, jax.profiler, torch.profiler) and prints the time per
kind of work: per TensorFlow op type, per PyTorch aten op, per layer (from XLA's op names)
under JAX. Times are summed over the backend's threads, per step. `--reference` profiles with
the layers' own ops (asc_keras.layers.fast_paths.disabled()).
"""

import argparse
import collections
import contextlib
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_train import keras_step, seconds_per_step, thread_environment  # this folder

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs


def tensorflow_times(logdir):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    times = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if name != "ExecutorState::Process":  # "scope/op:OpType" -> the op type
                    op_type = name.rpartition(":")[2].removeprefix("_MklNative")
                    times[op_type] += event.duration_ps / 1e9
    return times


def jax_times(logdir):
    """Per layer and pass: XLA's op names ("jit(train_step)/transpose(jvp(stage1_block1))/
    expand_relu/...") from the compiled step's HLO, joined with the trace's kernel times."""
    hlo = next(Path(logdir).rglob("*jit_train_step*after_optimizations.txt")).read_text()
    names = {}
    for match in re.finditer(r"\n(?:ROOT )?\s*%([\w.\-]+) = [^\n]*", hlo):
        op = re.search(r'op_name="([^"]*)"', match.group(0))
        if op:
            names.setdefault(match.group(1), op.group(1))
    for match in re.finditer(r"\n%([\w.\-]+) \([^\n]*\{\n(.*?)\n\}", hlo, re.S):
        ops = re.findall(r'op_name="([^"]*)"', match.group(2))
        if ops:
            names.setdefault(match.group(1), ops[-1])
    trace = json.loads(gzip.open(next(Path(logdir).rglob("*.trace.json.gz"))).read())
    times = collections.Counter()
    for event in trace["traceEvents"]:
        if event.get("ph") != "X" or "dur" not in event:
            continue
        name = event["name"]
        op = names.get(name) or names.get(re.sub(r"^wrapped_", "", name))
        if op is None:
            continue
        op = op.removeprefix("jit(train_step)/")
        backward = "transpose(" in op
        parts = re.sub(r"transpose\(|jvp\(|\)", "", op).split("/")
        layer = re.sub(r"stage\d_block\d", "blocks", parts[0])
        layer = re.sub(r"(stem_[a-z]+|stage)\d+", r"\1", layer)
        sublayer = parts[1] if len(parts) > 2 and layer == "blocks" else ""
        key = (
            f"{layer}{'/' + sublayer if sublayer else ''} ({'backward' if backward else 'forward'})"
        )
        times[key] += event["dur"] / 1e3
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax", "torch"])
    parser.add_argument("--variant", default="sm2")
    parser.add_argument("--norm", default="residual")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--reference", action="store_true", help="the layers' own ops")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.worker:
        with tempfile.TemporaryDirectory() as logdir:
            env = thread_environment(args.backend, 2)
            if args.backend == "jax":
                env["XLA_FLAGS"] += (
                    f" --xla_dump_to={logdir} --xla_dump_hlo_as_text --xla_dump_hlo_pass_re=NONE"
                )
            command = [sys.executable, __file__, *(argv or sys.argv[1:]), "--worker", logdir]
            return subprocess.run(command, env=env).returncode

    import keras

    from asc_keras.layers import fast_paths

    backend = keras.backend.backend()
    with fast_paths.disabled() if args.reference else contextlib.nullcontext():
        step = keras_step(args.variant, args.batch, args.norm)
        seconds_per_step(step, 3)  # warm-up
        step_ms = seconds_per_step(step, 3) * 1e3
        logdir = args.worker
        if backend == "tensorflow":
            import tensorflow as tf

            tf.profiler.experimental.start(logdir)
            seconds_per_step(step, args.steps)
            tf.profiler.experimental.stop()
            times = tensorflow_times(logdir)
        elif backend == "jax":
            import jax

            with jax.profiler.trace(logdir, create_perfetto_trace=True):
                seconds_per_step(step, args.steps)
            times = jax_times(logdir)
        else:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as profiler:
                seconds_per_step(step, args.steps)
            times = collections.Counter(
                {e.key: e.self_cpu_time_total / 1e3 for e in profiler.key_averages()}
            )
    total = sum(times.values())
    what = "the layers' own ops" if args.reference else "fast paths"
    print(
        f"training step, {args.variant} ({args.norm} norm), batch {args.batch}, 2 threads, "
        f"Keras/{backend} ({what}): {step_ms:.0f} ms per step; profiled "
        f"{total / args.steps:.0f} ms per step over the threads"
    )
    for name, value in times.most_common(args.top):
        per_step = value / args.steps
        print(f"{per_step:8.1f} ms  {100 * value / total:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
