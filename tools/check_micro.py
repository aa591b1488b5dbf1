"""Runs an int8 `.tflite` model in TFLite Micro and checks it against LiteRT's reference kernels.

    python tools/check_micro.py runs/sm2/quantized/model_int8.tflite [--inputs 100]

Inputs are drawn from a config's evaluation split when `--config` is given, otherwise random
log-mel-like values. Prints the arena and model bytes; exits 1 if any output differs.
"""

import os
from pathlib import Path

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

import numpy as np  # noqa: E402

from asc_keras import cli  # noqa: E402
from asc_keras.quantize.micro import check_micro  # noqa: E402


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("model", help="int8 .tflite model")
    parser.add_argument("--inputs", type=int, default=100)
    parser.add_argument("--config", help="take the inputs from this config's evaluation split")
    parser.add_argument("--data-root", help="dataset folder with meta.csv")
    args = parser.parse_args(argv)
    path = Path(args.model)
    model_bytes = cli.read_tflite(path)
    from asc_keras.evaluation.tflite import TFLiteClassifier

    shape = TFLiteClassifier(model_bytes, source=str(path)).input_shape
    if args.config:
        from asc_keras.config import load_config
        from asc_keras.data.pipeline import make_dataset, open_split, with_data_root

        config = load_config(args.config)
        config = with_data_root(config, args.data_root)
        cache = open_split(config, config.data.eval_split)
        batches = make_dataset(cache, config, batch_size=args.inputs).take(1)
        inputs = np.asarray(next(iter(batches))[0])
    else:
        inputs = np.random.default_rng(0).normal(-4.0, 3.0, (args.inputs, *shape))
    result = check_micro(model_bytes, inputs)
    print(
        f"{path.name}: {result['inputs']} inputs, {result['mismatched_outputs']} outputs differ "
        f"from LiteRT reference kernels (max {result['max_int8_difference']} LSB)"
    )
    print(f"arena {result['arena_bytes']} bytes, model {result['model_bytes']} bytes")
    return 1 if result["mismatched_outputs"] else 0


if __name__ == "__main__":
    cli.run(main)
