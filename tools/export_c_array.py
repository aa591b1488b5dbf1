"""Writes a `.tflite` model as a C header / source pair for firmware.

python tools/export_c_array.py runs/sm2/quantized/model_int8.tflite out/asc_model [--name asc_model]
"""

import os

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

from asc_keras import cli  # noqa: E402
from asc_keras.quantize.c_array import write_c_array  # noqa: E402


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("model", help=".tflite model")
    parser.add_argument("out", help="output path without suffix (writes OUT.h and OUT.cc)")
    parser.add_argument("--name", help="C array name (default: the output file name)")
    args = parser.parse_args(argv)
    data = cli.read_tflite(args.model)
    header, source = write_c_array(data, args.out, args.name)
    print(f"wrote {header} and {source} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    cli.run(main)
