"""Per-clip inference latency and clips/s of DS-FlexiNet: Keras, float and int8 TFLite, PyTorch.

    python tools/bench_inference.py [--variant sm2] [--norm residual] [--run runs/demo]

Without --run, the models are built here from random weights (speed does not depend on the
weights): the Keras model, its float TFLite conversion and an int8 conversion calibrated on
random inputs (the same ops as the QAT export). With --run, a run folder's trained student
(student/last.keras) and its exported quantized/model_float.tflite and model_int8.tflite.

Rows: Keras `predict` and a compiled call (`tf.function` of the model), float and int8
TFLite with LiteRT (as shipped, with the XNNPACK delegate, on 1 and 2 threads; and its
builtin kernels alone, 1 thread), and the PyTorch eager reference
(tools/torch_reference.py, `torch.inference_mode`). Latency is the median over --reps calls
on one clip (1 x 256 x 64), after warm-up; clips/s is the throughput on a batch of
--batch clips (TFLite models take one clip per call, as on a microcontroller). The TFLite
Micro arena of the int8 model closes the report.
"""

import functools
import os
import sys
import time
from pathlib import Path

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from asc_keras import cli  # noqa: E402
from asc_keras.models import NORMS  # noqa: E402


def median_seconds(call, reps, warmup=10):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def keras_rows(model, clip, batch, reps):
    import tensorflow as tf

    compiled = tf.function(lambda x: model(x, training=False), jit_compile=False)
    rows = []
    for name, call in (
        ("Keras predict", lambda x: model.predict(x, verbose=0, batch_size=len(x))),
        ("Keras compiled call (tf.function)", lambda x: compiled(tf.constant(x)).numpy()),
    ):
        latency = median_seconds(functools.partial(call, clip), reps)
        throughput = len(batch) / median_seconds(
            functools.partial(call, batch), max(3, reps // 20), 2
        )
        rows.append([name, "2 (TF default)", latency, throughput])
    return rows


def tflite_rows(name, model_bytes, clip, reps):
    """LiteRT as shipped (XNNPACK delegate), 1 and 2 threads, and its builtin kernels alone."""
    from asc_keras.evaluation.tflite import TFLiteClassifier

    rows = []
    for kernels, threads in (("XNNPACK", 1), ("XNNPACK", 2), ("builtin", 1)):
        model = TFLiteClassifier(model_bytes, threads=threads, xnnpack=kernels == "XNNPACK")
        model.runner.set_tensor(model.input["index"], model.quantize_input(clip))
        latency = median_seconds(model.runner.invoke, reps)
        rows.append([f"{name}, {kernels} kernels", str(threads), latency, 1.0 / latency])
    return rows


def torch_rows(variant, clip, batch, reps, threads):
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from torch_reference import ds_flexinet_torch

    torch.set_num_threads(threads)
    model = ds_flexinet_torch(variant).eval()
    one = torch.from_numpy(clip.transpose(0, 3, 1, 2).copy())
    many = torch.from_numpy(batch.transpose(0, 3, 1, 2).copy())
    with torch.inference_mode():
        latency = median_seconds(lambda: model(one), reps)
        throughput = len(batch) / median_seconds(lambda: model(many), max(3, reps // 20), 2)
    return [["PyTorch eager reference", str(threads), latency, throughput]]


def build_models(variant, norm, run):
    """(Keras model, float .tflite bytes, int8 .tflite bytes)."""
    import keras

    if run is not None:
        run = Path(run)
        model = keras.saving.load_model(run / "student" / "last.keras")
        quantized = run / "quantized"
        return (
            model,
            cli.read_tflite(quantized / "model_float.tflite"),
            cli.read_tflite(quantized / "model_int8.tflite"),
        )
    from asc_keras import ds_flexinet
    from asc_keras.quantize.convert import check_int8, convert
    from asc_keras.quantize.twin import build_twin, float_tflite

    model = ds_flexinet(variant, norm=norm)
    twin = build_twin(model)
    rng = np.random.default_rng(0)
    representative = [rng.normal(-5, 2, (16, *model.input_shape[1:])).astype(np.float32)]
    int8 = convert(twin, representative)
    check_int8(int8, f"{variant} int8 model")
    return model, float_tflite(model), int8


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("--variant", default="sm2")
    parser.add_argument("--norm", default="residual", choices=NORMS)
    parser.add_argument("--run", help="a tools/train.py run folder with its quantized models")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)

    from asc_keras.quantize.micro import check_micro
    from asc_keras.utils import format_table

    model, float_bytes, int8_bytes = build_models(args.variant, args.norm, args.run)
    rng = np.random.default_rng(1)
    batch = rng.normal(-5, 2, (args.batch, *model.input_shape[1:])).astype(np.float32)
    clip = batch[:1]
    rows = keras_rows(model, clip, batch, args.reps)
    rows += tflite_rows("float TFLite", float_bytes, clip, args.reps)
    rows += tflite_rows("int8 TFLite", int8_bytes, clip, args.reps)
    rows += torch_rows(args.variant, clip, batch, args.reps, args.threads)
    table = [[name, threads, f"{1000 * s:.3f}", f"{rate:.0f}"] for name, threads, s, rate in rows]
    source = args.run or f"{args.variant} ({args.norm} norm), random weights"
    print(
        format_table(
            ["model", "threads", "ms per clip", "clips/s"],
            table,
            title=f"inference, {source}, batch {args.batch} for clips/s ({os.cpu_count()} cores)",
        )
    )
    latency = {(name, threads): s for name, threads, s, _ in rows}
    for kernels in ("XNNPACK", "builtin"):
        int8_one = latency[(f"int8 TFLite, {kernels} kernels", "1")]
        float_one = latency[(f"float TFLite, {kernels} kernels", "1")]
        print(
            f"{kernels} kernels, 1 thread: int8 {1000 * int8_one:.3f} ms per clip (target "
            f"<= 1 ms), int8 / float latency {int8_one / float_one:.2f} (target <= 0.5)"
        )
    micro = check_micro(int8_bytes, batch[:5])
    print(
        f"TFLite Micro: arena {micro['arena_bytes']} bytes, model {micro['model_bytes']} bytes "
        f"({micro['mismatched_outputs']} of {micro['inputs']} outputs differ from LiteRT reference)"
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
