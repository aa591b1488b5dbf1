"""Assembles a TFLite Micro checkout and its pinned third-party downloads, without a network.

    python tools/mcu_sources.py DIR [--repos FOLDER ...] [--network] [--commit SHA]

DIR becomes a TFLite Micro checkout (at --commit, default the one this project was checked
with) with `tensorflow/lite/micro/tools/make/downloads/` filled at the commits its own
download scripts pin (CMSIS_6, Cortex_DFP, CMSIS-NN, flatbuffers, gemmlowp, ruy, kissfft),
TFLite Micro's patches applied. Each repository is taken from a local git repository under
a --repos folder (`owner+name/repo` as a fetched snapshot leaves it, `name.git` or `name`);
with --network, a missing one is cloned from GitHub. Then point tools/mcu.py at DIR with
--tflm DIR or ASC_TFLM_DIR=DIR.
"""

import os

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs

from asc_keras import cli  # noqa: E402
from asc_keras.mcu.sources import TFLM_COMMIT, assemble, find_tflm  # noqa: E402


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("directory", help="the TFLite Micro checkout to make or complete")
    parser.add_argument("--repos", nargs="+", default=[], help="folders with local git repos")
    parser.add_argument("--network", action="store_true", help="git clone what is missing")
    parser.add_argument("--commit", default=TFLM_COMMIT, help="TFLite Micro commit")
    args = parser.parse_args(argv)
    made = assemble(args.directory, args.repos, network=args.network, commit=args.commit)
    find_tflm(args.directory)  # checks the result
    print(f"{args.directory}: complete ({len(made)} folders made)")
    return 0


if __name__ == "__main__":
    cli.run(main)
