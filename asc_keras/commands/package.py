"""Packages finished run folders as a DCASE 2025 Task 1 inference package.

    python tools/package.py runs/dcase2025 -o submission --name Schmid_CPJKU_task1 --index 1
    python tools/package.py RUN1 RUN2 -o submission --name Schmid_CPJKU_task1 \\
        --evaluation-set /data/TAU-2025-eval

Each run folder becomes one system (index, index + 1, ...; at most four): its int8 general
model and device models (--float: their float TFLite models), a float front end, and the
challenge's inference API in OUT/NAME/NAME/NAME_K.py; `pip install OUT/NAME` installs it
without asc_keras. --evaluation-set DIR also writes OUT/NAME_K.output.csv, the DCASE output
of every file of DIR/evaluation_setup/fold1_test.csv. A name not in the challenge's form, an
index above 4, a run without the models, a model over the limits or runs with different
class orders: one line, nothing written.
"""

from pathlib import Path

from asc_keras import cli
from asc_keras.errors import UserError


def evaluation_output(system, evaluation_set, out_file):
    """The DCASE output of system `system` (its packaged model files and front end) on every
    file listed in `evaluation_set`/evaluation_setup/fold1_test.csv, written to `out_file`."""
    from asc_keras.commands.predict import as_tsv, collect, submission_rows
    from asc_keras.inference import Classifier, device_of, predict, system_front_end
    from asc_keras.utils import atomic_write_text

    listing = Path(evaluation_set) / "evaluation_setup" / "fold1_test.csv"
    if not listing.is_file():
        raise UserError(f"--evaluation-set: {listing} does not exist")
    files = collect([str(listing)])
    devices = [listed or device_of(name) for _, name, listed in files]
    front_end = system_front_end(system.run)  # as the package computes its inputs
    config = system.run / "config.yaml"
    models = {d: Classifier(p, config, front_end=front_end) for d, p in system.models.items()}
    predictions, errors, classes = predict([f for f, _, _ in files], devices, models)
    if errors:
        path, reason = errors[0]
        raise UserError(f"--evaluation-set: cannot classify {path}: {reason}")
    names = {str(f): name for f, name, _ in files}
    for p in predictions:
        p.name = names[p.path]
    atomic_write_text(out_file, as_tsv(submission_rows(predictions, classes, False), classes))
    return len(predictions)


def main(argv=None):
    from asc_keras.submission.package import check_request, write_package

    parser = cli.argument_parser(__doc__)
    parser.add_argument("runs", nargs="+", help="finished run folders, one per system")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--name", required=True, help="submission label, e.g. Schmid_CPJKU_task1")
    parser.add_argument("--index", type=int, default=1, help="index of the first system (1-4)")
    parser.add_argument("--float", action="store_true", help="float models instead of int8")
    parser.add_argument("--evaluation-set", help="dataset folder whose fold1_test.csv to classify")
    args = parser.parse_args(argv)
    kind = "float" if args.float else "int8"
    systems = check_request(args.runs, args.name, args.index, kind)
    out = Path(args.out)
    outputs = [out / f"{args.name}_{s.index}.output.csv" for s in systems]
    if args.evaluation_set:
        for path in outputs:
            cli.check_output(path, flag="-o")
    project = write_package(systems, out, args.name, kind)
    print(
        f"wrote {project} (systems {', '.join(str(s.index) for s in systems)}); install it "
        f"with: pip install {project}"
    )
    if args.evaluation_set:
        for system, path in zip(systems, outputs):
            count = evaluation_output(system, args.evaluation_set, path)
            print(f"system {system.index}: {count} evaluation clips classified, wrote {path}")
    return 0


def run():
    """The `asc-keras-package` console script."""
    cli.run(main)


if __name__ == "__main__":
    run()
