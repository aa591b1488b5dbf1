"""Decodes and resamples dataset splits once into waveform caches (resumable).

python tools/prepare_dataset.py configs/sm2.yaml --data-root /data/TAU-2022 --split train
"""

import os

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

from asc_keras import cli  # noqa: E402
from asc_keras.config import Config, load_config  # noqa: E402
from asc_keras.data.pipeline import open_split, with_data_root  # noqa: E402


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument(
        "config", nargs="?", help="YAML config (data section); defaults if left out"
    )
    parser.add_argument(
        "--data-root", help="dataset folder with meta.csv (else config / ASC_DATA_ROOT)"
    )
    parser.add_argument("--split", action="append", help="split(s) to cache; default: the config's")
    args = parser.parse_args(argv)
    config = with_data_root(load_config(args.config) if args.config else Config(), args.data_root)
    for split in args.split or [config.data.train_split, config.data.eval_split]:
        cache = open_split(config, split)
        print(
            f"{split}: {len(cache)} clips at {cache.sample_rate} Hz, "
            f"mean energy {cache.mean_energy:.3f}"
        )
    return 0


if __name__ == "__main__":
    cli.run(main)
