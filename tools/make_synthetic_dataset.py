"""Writes a small synthetic dataset in the TAU Urban Acoustic Scenes 2022 Mobile layout.

python tools/make_synthetic_dataset.py data/synthetic [--scale 2]
"""

import os
import time

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

from asc_keras import cli  # noqa: E402
from asc_keras.data.synthetic import make_synthetic_dataset  # noqa: E402


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("out", help="folder to create (meta.csv, audio/, evaluation_setup/, ...)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every clip count")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.time()
    count = make_synthetic_dataset(
        args.out,
        train_clips_a=max(1, round(24 * args.scale)),
        train_clips_other=max(1, round(6 * args.scale)),
        evaluate_clips=max(1, round(3 * args.scale)),
        seed=args.seed,
    )
    print(f"wrote {count} clips to {args.out} in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    cli.run(main)
