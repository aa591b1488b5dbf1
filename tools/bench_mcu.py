"""Every DS-FlexiNet variant on emulated Cortex-M CPUs: instructions, latency estimate, memory.

    python tools/bench_mcu.py [--variants sm1 sm2 sm3 sm4] [--norms residual batch]
        [--tflm DIR] [--inputs 1]

For each variant and stage normalisation: the int8 model of the QAT path (random weights,
calibrated on random log-mel-like inputs, as tools/check_int8_variants.py makes it) and the
float TFLite model of the same network, each run through TFLite Micro in QEMU
(tools/mcu.py's firmware): int8 on Cortex-M4 with CMSIS-NN, on Cortex-M4 with the reference
kernels and on Cortex-M55 with CMSIS-NN; float on Cortex-M4 with the reference kernels and
the FPU (float outputs are not expected bit-exact: the largest difference is printed). Prints
instructions per inference, the latency estimate at 80 MHz (M4) / 160 MHz
(M55) from the instruction count (one instruction per cycle: not measured cycles), arena and
flash, and the M4 int8 / float instruction ratio. Instruction counts depend on the shapes, not
on the weights or the input (over 20 evaluation clips of the demo model they moved by 0.1 %).
"""

import os
import time

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs

import numpy as np  # noqa: E402

from asc_keras import cli  # noqa: E402
from asc_keras.models import VARIANTS  # noqa: E402
from asc_keras.utils import format_table  # noqa: E402

CONFIGS = [  # (label, cpu, kernels, model)
    ("M4 CMSIS-NN", "cortex-m4", "cmsis-nn", "int8"),
    ("M4 reference", "cortex-m4", "reference", "int8"),
    ("M55 CMSIS-NN", "cortex-m55", "cmsis-nn", "int8"),
    ("M4 float", "cortex-m4", "reference", "float"),
]


def models(variant, norm, inputs):
    """The int8 (QAT path) and float TFLite models of one variant."""
    from check_int8_variants import build_variant  # tools/ is on the path

    from asc_keras.quantize.twin import float_tflite

    model, _, int8 = build_variant(variant, norm, inputs)
    return {"int8": int8, "float": float_tflite(model)}


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("--variants", nargs="+", default=sorted(VARIANTS))
    parser.add_argument("--norms", nargs="+", default=["residual", "batch"])
    parser.add_argument("--tflm", help="TFLite Micro checkout (default: $ASC_TFLM_DIR)")
    parser.add_argument("--inputs", type=int, default=1, help="inputs per model and cpu")
    args = parser.parse_args(argv)

    from asc_keras.evaluation.tflite import TFLiteClassifier
    from asc_keras.mcu.firmware import CPUS
    from asc_keras.mcu.measure import latency_ms, measure, quantized_inputs
    from asc_keras.mcu.sources import require_emulator

    require_emulator(args.tflm)
    features = np.random.default_rng(0).normal(-4.0, 3.0, (64, 256, 64, 1)).astype(np.float32)
    rows, ratios, started = [], [], time.perf_counter()
    for variant in args.variants:
        for norm in args.norms:
            built = models(variant, norm, features)
            counts = {}
            for label, cpu, kernels, kind in CONFIGS:
                classifier = TFLiteClassifier(built[kind], reference_kernels=True)
                inputs = quantized_inputs(classifier, features[: args.inputs])
                result = measure(
                    built[kind],
                    inputs,
                    cpu=cpu,
                    kernels=kernels,
                    tflm=args.tflm,
                    log=lambda _: None,
                )
                counts[label] = result["instructions"]
                rows.append(
                    [
                        variant,
                        norm,
                        label,
                        f"{result['instructions'] / 1e6:.1f}",
                        f"{latency_ms(result['instructions'], CPUS[cpu].mhz):.0f}",
                        f"{result['arena_bytes'] / 1024:.1f}",
                        f"{result['flash_bytes'] / 1024:.1f}",
                        f"{result['identical_outputs']}/{result['inputs']}"
                        + (
                            f" (max diff {result['max_output_difference']:.2g})"
                            if kind == "float" and result["max_output_difference"]
                            else ""
                        ),
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
            ratios.append(
                [
                    variant,
                    norm,
                    f"{counts['M4 CMSIS-NN'] / counts['M4 float']:.3f}",
                    f"{counts['M4 reference'] / counts['M4 float']:.3f}",
                ]
            )
    headers = ["variant", "norm", "cpu, kernels", "M instructions", "est. ms", "arena KB"]
    headers += ["flash KB", "= LiteRT ref"]
    print()
    print(format_table(headers, rows, title="per inference (est. ms: 80 MHz M4, 160 MHz M55)"))
    print()
    print(
        format_table(
            ["variant", "norm", "int8 CMSIS-NN / float", "int8 reference / float"],
            ratios,
            title="Cortex-M4 instructions, int8 against float (reference kernels, FPU)",
        )
    )
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    cli.run(main)
