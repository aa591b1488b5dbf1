"""Every DS-FlexiNet variant through the int8 path: ops, TFLite Micro agreement, arena size.

    python tools/check_int8_variants.py [--variants sm1 sm2] [--norms residual batch] [--json]

For each variant and stage normalisation it builds the model (random weights: the checks do
not depend on training; the normalisation weights are drawn apart, as a trained model's are),
its tf_keras twin and the tfmot QAT model. `qat.calibrate` sets the quantizer ranges from
random log-mel-like inputs, as before QAT fine-tuning, and the int8 TFLite model is calibrated
on the same inputs. Then it checks that every op is int8 and runs 100 inputs in TFLite Micro
against LiteRT's reference kernels (exit 1 if any output differs). With --json it also gives
the TFLite parameter count beside the Keras count with every BatchNorm folded (equal when all
BatchNorms fold).

Where the Arm toolchain, qemu-system-arm and a TFLite Micro checkout ($ASC_TFLM_DIR or --tflm;
see tools/mcu.py) are present, each model also runs on an emulated Cortex-M4 with CMSIS-NN
(--mcu-inputs of the inputs): instructions per inference and whether its outputs equal
LiteRT's reference kernels. Where they are not, the output says so and why.
"""

import json
import os
import sys

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

import keras  # noqa: E402  (Keras 3 before tfmot)
import numpy as np  # noqa: E402

from asc_keras import cli  # noqa: E402
from asc_keras.complexity import count_model, count_tflite, folded_param_count  # noqa: E402
from asc_keras.models import VARIANTS, ds_flexinet  # noqa: E402
from asc_keras.utils import format_table  # noqa: E402

NORMALIZATION_WEIGHTS = {  # name -> random range, as a trained model's distinct values
    "gamma": (0.5, 1.5),
    "moving_variance": (0.5, 1.5),
    "beta": (-0.2, 0.2),
    "moving_mean": (-0.2, 0.2),
    "residual_lambda": (0.05, 0.2),
}


def randomize_normalization(model, seed=0):
    """BatchNorm and ResidualNorm weights drawn at random instead of their initial 1 / 0 /
    0.1: equal constants would be shared in the .tflite file, and a trained model's are not."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        low_high = NORMALIZATION_WEIGHTS.get(weight.path.split("/")[-1])
        if low_high:
            weight.assign(rng.uniform(*low_high, weight.shape).astype("float32"))


def mcu_unavailable(tflm):
    """None when the emulated Cortex-M can run, else why not (one line)."""
    from asc_keras.mcu.sources import SourcesError, require_emulator

    try:
        require_emulator(tflm)
    except SourcesError as error:
        return str(error)
    return None


def mcu_figures(int8, inputs, tflm):
    """Instructions per inference and output agreement on an emulated M4 with CMSIS-NN."""
    from asc_keras.evaluation.tflite import TFLiteClassifier
    from asc_keras.mcu.measure import measure, quantized_inputs

    classifier = TFLiteClassifier(int8, reference_kernels=True)
    result = measure(
        int8,
        quantized_inputs(classifier, inputs),
        cpu="cortex-m4",
        kernels="cmsis-nn",
        tflm=tflm,
        log=lambda line: None,
    )
    return {
        "m4_cmsis_nn_instructions": result["instructions"],
        "m4_cmsis_nn_identical": f"{result['identical_outputs']}/{result['inputs']}",
        "m4_cmsis_nn_per_op": result["instructions_per_op"],
    }


def build_variant(variant, norm, inputs):
    """(Keras model, tf_keras twin, int8 TFLite model of the QAT path) of one variant: random
    weights, quantizer ranges calibrated on `inputs`, as before QAT fine-tuning."""
    from asc_keras.quantize import qat
    from asc_keras.quantize.convert import convert
    from asc_keras.quantize.twin import build_twin

    keras.utils.set_random_seed(0)
    model = ds_flexinet(variant, norm=norm)
    randomize_normalization(model)
    twin = build_twin(model)
    qat_model = qat.make_qat_model(twin)
    qat.calibrate(qat_model, [inputs[start : start + 16] for start in range(0, len(inputs), 16)])
    return model, twin, convert(qat_model, [inputs[:32]])


def check_variant(variant, norm, inputs, mcu_inputs=0, tflm=None):
    from asc_keras.quantize.convert import check_int8
    from asc_keras.quantize.micro import check_micro

    model, _, int8 = build_variant(variant, norm, inputs)
    ops = check_int8(int8, f"{variant} ({norm})")
    micro = check_micro(int8, inputs)
    counted = count_model(model)
    mcu = mcu_figures(int8, inputs[:mcu_inputs], tflm) if mcu_inputs else {}
    return {
        "variant": variant,
        "norm": norm,
        "params": counted.params,
        "folded_params": folded_param_count(counted),
        "tflite_params": count_tflite(int8)["params"],
        "ops": ops,
        **micro,
        **mcu,
    }


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("--variants", nargs="+", default=sorted(VARIANTS))
    parser.add_argument("--norms", nargs="+", default=["residual", "batch"])
    parser.add_argument("--inputs", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--mcu-inputs", type=int, default=2, help="0: no emulated Cortex-M")
    parser.add_argument("--tflm", help="TFLite Micro checkout (default: $ASC_TFLM_DIR)")
    args = parser.parse_args(argv)
    inputs = np.random.default_rng(0).normal(-4.0, 3.0, (args.inputs, 256, 64, 1))
    why_not = mcu_unavailable(args.tflm) if args.mcu_inputs else "--mcu-inputs 0"
    mcu_inputs = 0 if why_not else args.mcu_inputs
    rows = [
        check_variant(v, n, inputs.astype(np.float32), mcu_inputs, args.tflm)
        for v in args.variants
        for n in args.norms
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        table = [
            [
                r["variant"],
                r["norm"],
                f"{r['params']}",
                "yes",
                f"{r['inputs'] - r['mismatched_outputs']}/{r['inputs']}",
                f"{r['arena_bytes'] / 1024:.1f}",
                f"{r['model_bytes'] / 1024:.1f}",
            ]
            + (
                [f"{r['m4_cmsis_nn_instructions'] / 1e6:.1f}", r["m4_cmsis_nn_identical"]]
                if mcu_inputs
                else []
            )
            for r in rows
        ]
        headers = [
            "variant",
            "norm",
            "params",
            "all ops int8",
            "Micro = LiteRT ref",
            "arena KiB",
            "model KiB",
        ] + (["M4 CMSIS-NN M instr", "M4 = LiteRT ref"] if mcu_inputs else [])
        print(format_table(headers, table, title="int8 TFLite per variant (QAT path)"))
    if why_not:
        where = sys.stderr if args.json else sys.stdout
        print(f"M4 CMSIS-NN figures: not measured ({why_not})", file=where)
    return 1 if any(r["mismatched_outputs"] for r in rows) else 0


if __name__ == "__main__":
    cli.run(main)
