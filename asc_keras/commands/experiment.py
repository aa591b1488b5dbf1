"""Runs a grid of recipe configs over seeds and writes one results table: the paper's
Tables IV (no teacher / averaged / fused) and V (normalisation x augmentation) as one command.

python tools/experiment.py configs/experiment_paper.yaml [--data-root DIR] [--out DIR]
                           [--seeds N] [--table TITLE]... [--report] [--set KEY=VALUE]...

Teachers train once and every distilled row reads their logits; each (row, seed) is an
ordinary run folder under <out>/runs/. Rerun the same command after a crash: finished runs
are skipped and the interrupted one resumes from its last checkpoint. The results (results.md,
results.csv, runs.csv, results.png in <out>) are written again after every run.
"""

from pathlib import Path

from asc_keras import cli
from asc_keras.config import add_set_argument
from asc_keras.experiment import Runner, load_experiment, print_results


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("experiment", help="experiment file, e.g. configs/experiment_paper.yaml")
    parser.add_argument(
        "--data-root", help="dataset folder with meta.csv (else the config's / ASC_DATA_ROOT)"
    )
    parser.add_argument("--out", help="experiment folder (default runs/<experiment name>)")
    parser.add_argument("--seeds", type=int, help="seeds per row (default: the file's)")
    parser.add_argument(
        "--table",
        action="append",
        help='run only this table (its title or the title\'s start, e.g. "Table IV"); repeatable',
    )
    parser.add_argument(
        "--report", action="store_true", help="only write the results of the finished runs"
    )
    parser.add_argument("--progress", action="store_true", help="per-epoch progress bars")
    add_set_argument(parser)  # on the base config, under every row's changes
    args = parser.parse_args(argv)
    experiment = load_experiment(
        args.experiment, seeds=args.seeds, tables=args.table, overrides=args.overrides
    )
    out = Path(args.out or Path("runs") / Path(args.experiment).stem)
    runner = Runner(experiment, out, data_root=args.data_root, verbose=1 if args.progress else 2)
    table = runner.write_results() if args.report else runner.run()
    print_results(experiment, table)
    print(f"results: {out / 'results.md'} (also results.csv, runs.csv, results.png)")
    return 0


def run():
    """The `asc-keras-experiment` console script."""
    cli.run(main)


if __name__ == "__main__":
    run()
