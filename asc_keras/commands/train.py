"""Trains a DS-FlexiNet student with the paper's recipe, stage by stage, in one run folder.

python tools/train.py configs/sm2.yaml [--data-root DIR] [--out runs/sm2] [--resume | --new-run]
                                        [--set KEY=VALUE]...
"""

import contextlib
from pathlib import Path

from asc_keras import cli
from asc_keras.config import add_set_argument, load_config, with_resolved_paths
from asc_keras.data.tau22 import with_data_root
from asc_keras.run_folder import check_config, locked_before_loading, new_run_folder


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("config", help="YAML config, e.g. configs/sm2.yaml")
    parser.add_argument(
        "--data-root", help="dataset folder with meta.csv (else config / ASC_DATA_ROOT)"
    )
    parser.add_argument("--out", help="run folder (default runs/<config name>)")
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true", help="continue an interrupted run")
    runs.add_argument(
        "--new-run",
        action="store_true",
        help="if --out is taken, start in the first free <out>-2, <out>-3, ... instead",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress bars")
    add_set_argument(parser)
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    if args.new_run:
        out = new_run_folder(out)
        print(f"new run folder: {out}")
    # The folder's config and lock before TensorFlow loads (seconds to a minute): a refused
    # run says so at once. Multi-worker runs lock once each worker knows whether it is chief.
    resolved = with_resolved_paths(with_data_root(config, args.data_root), args.config)
    check_config(resolved, out / "config.yaml")
    early = config.distribution.strategy != "multi_worker"
    with locked_before_loading(out) if early else contextlib.nullcontext():
        from asc_keras.recipe import run_training  # loads TensorFlow

        run_training(
            config,
            out,
            config_path=args.config,
            data_root=args.data_root,
            resume=args.resume,
            verbose=2 if args.quiet else 1,
        )
    print(f"run folder: {out}")
    return 0


def run():
    """The `asc-keras-train` console script."""
    cli.run(main)


if __name__ == "__main__":
    run()
