"""Runs a `.tflite` model on an emulated Cortex-M with TFLite Micro, and checks and measures it.

    python tools/mcu.py MODEL.tflite [--cpu cortex-m4|cortex-m7|cortex-m55]
        [--kernels cmsis-nn|reference] [--tflm DIR] [--run RUN] [--inputs 20] [--mhz MHZ]
        [--json OUT.json] [--keep DIR]

Builds TFLite Micro for the cpu and kernel set (once per TFLite Micro checkout; make keeps
it), links a bare-metal firmware holding the model and the inputs (only the ops the model
uses registered), runs it in QEMU with instruction counting, and prints: the outputs against
LiteRT's reference kernels (expected identical), instructions per inference in total and per
op type, the arena bytes, flash (code + constants, the model included) and RAM (data + bss +
arena), and a latency estimate at --mhz (default: a typical part's clock).

Inputs: the evaluation clips of the run folder (--run, or the run the model lies in, e.g.
runs/sm2/quantized/model_int8.tflite), else random ones. TFLite Micro comes from --tflm or
$ASC_TFLM_DIR (python tools/mcu_sources.py makes one); the Arm GCC toolchain and
qemu-system-arm must be on PATH.
"""

import json
import os
from pathlib import Path

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs

import numpy as np  # noqa: E402

from asc_keras import cli  # noqa: E402
from asc_keras.mcu.firmware import CPUS, KERNELS  # noqa: E402
from asc_keras.utils import atomic_write_text, format_table  # noqa: E402


def run_folder_of(model_path, run):
    """The run folder whose evaluation clips feed the model: --run, else the model's run."""
    if run:
        return Path(run)
    parent = Path(model_path).resolve().parent.parent
    return parent if (parent / "config.yaml").is_file() else None


def evaluation_features(run, count):
    """The first `count` evaluation clips' log-mel features of the run's config."""
    from asc_keras.config import load_config
    from asc_keras.data.pipeline import make_dataset, open_split

    config = load_config(Path(run) / "config.yaml")
    cache = open_split(config, config.data.eval_split, progress=False)
    batch = next(iter(make_dataset(cache, config, batch_size=count).take(1)))
    return np.asarray(batch[0])[:count]


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("model", help=".tflite model (int8 or float)")
    parser.add_argument("--cpu", choices=sorted(CPUS), default="cortex-m4")
    parser.add_argument("--kernels", choices=sorted(KERNELS), default="cmsis-nn")
    parser.add_argument("--tflm", help="TFLite Micro checkout (default: $ASC_TFLM_DIR)")
    parser.add_argument("--run", help="run folder whose evaluation clips are the inputs")
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--mhz", type=float, help="clock for the latency estimate")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--keep", help="keep the firmware sources and image in this folder")
    args = parser.parse_args(argv)
    if args.inputs < 1:
        parser.error("--inputs must be at least 1")

    from asc_keras.evaluation.tflite import TFLiteClassifier
    from asc_keras.mcu.measure import latency_ms, measure, quantized_inputs, random_inputs
    from asc_keras.mcu.sources import require_emulator

    require_emulator(args.tflm)
    model_bytes = cli.read_tflite(args.model)
    classifier = TFLiteClassifier(model_bytes, reference_kernels=True, source=args.model)
    run = run_folder_of(args.model, args.run)
    if run is not None:
        inputs = quantized_inputs(classifier, evaluation_features(run, args.inputs))
        source = f"{len(inputs)} evaluation clips of {run}"
    else:
        inputs = random_inputs(classifier, args.inputs)
        source = f"{len(inputs)} random inputs"
    result = measure(
        model_bytes, inputs, cpu=args.cpu, kernels=args.kernels, tflm=args.tflm, keep=args.keep
    )
    mhz = args.mhz or CPUS[args.cpu].mhz
    result |= {
        "inputs_from": source,
        "mhz": mhz,
        "latency_ms": latency_ms(result["instructions"], mhz),
    }
    print(report(result, args.model))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return 0 if result["identical_outputs"] == result["inputs"] else 1


def report(result, model):
    total = result["instructions"]
    lines = [
        f"{model} on {result['cpu']} ({result['machine']} in QEMU), {result['kernels']} "
        f"kernels, {result['inputs_from']}",
        f"outputs identical to LiteRT's reference kernels: {result['identical_outputs']} of "
        f"{result['inputs']}"
        + (
            ""
            if result["identical_outputs"] == result["inputs"]
            else f" (largest difference {result['max_output_difference']:g}; same class "
            f"{result['same_class']} of {result['inputs']})"
        ),
        f"instructions per inference: {total / 1e6:.2f} M (min "
        f"{result['instructions_min'] / 1e6:.2f} M, max {result['instructions_max'] / 1e6:.2f} M)",
        f"latency estimate at {result['mhz']:g} MHz: {result['latency_ms']:.0f} ms (from the "
        f"instruction count at one instruction per cycle; not measured cycles)",
        f"arena {result['arena_bytes'] / 1024:.1f} KB; flash {result['flash_bytes'] / 1024:.1f}"
        f" KB (model {result['model_bytes'] / 1024:.1f} KB); RAM {result['ram_bytes'] / 1024:.1f}"
        f" KB (data + bss + arena)",
    ]
    rows = [
        (name, f"{count / 1e6:.2f}", f"{100 * count / total:.1f}")
        for name, count in result["instructions_per_op"].items()
    ]
    lines.append(format_table(["op", "M instructions", "%"], rows))
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run(main)
