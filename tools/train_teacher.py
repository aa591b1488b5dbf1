"""Trains one teacher and writes its logits for every train and evaluate clip.

python tools/train_teacher.py configs/teacher_cpresnet.yaml --seed 1 --out runs/teacher-1

With --folds K the teacher trains K times, each time without one fold of the training split,
and every training clip's logits come from the model that did not see it (docs/distillation.md).
"""

import dataclasses
import os
from pathlib import Path

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

from asc_keras import cli  # noqa: E402
from asc_keras.config import add_set_argument, load_config  # noqa: E402
from asc_keras.data.pipeline import (
    Splits,  # noqa: E402
    with_data_root,  # noqa: E402
)
from asc_keras.distill.folds import fold_assignment  # noqa: E402
from asc_keras.recipe import train_teacher, train_teacher_out_of_fold  # noqa: E402
from asc_keras.run_folder import locked_run_folder  # noqa: E402


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("config", help="teacher config, e.g. configs/teacher_cpresnet.yaml")
    parser.add_argument("--seed", type=int, help="overrides training.seed")
    parser.add_argument("--data-root", help="dataset folder with meta.csv")
    parser.add_argument("--out", help="stage folder (default runs/<config name>-seed<N>)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument(
        "--folds",
        type=cli.positive(int),
        default=1,
        help="out-of-fold logits from K models (default 1: one model labels its own clips)",
    )
    parser.add_argument(
        "--fold-seed",
        type=int,
        default=0,
        help="fixes the folds; a run's teachers use its training.seed (default 0)",
    )
    add_set_argument(parser)
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    if args.seed is not None:
        config.training = dataclasses.replace(config.training, seed=args.seed)
    config = with_data_root(config, args.data_root)
    out = Path(args.out or f"runs/{Path(args.config).stem}-seed{config.training.seed}")
    with locked_run_folder(config, out):
        splits = Splits.open(config)
        if args.folds > 1:
            assignment = fold_assignment(splits.train.records, args.folds, args.fold_seed)
            path = train_teacher_out_of_fold(config, out, splits, assignment, resume=args.resume)
        else:
            path = train_teacher(config, out, splits, resume=args.resume)
    print(f"teacher logits: {path}")
    return 0


if __name__ == "__main__":
    cli.run(main)
