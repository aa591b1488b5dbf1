"""Packages finished run folders as a DCASE 2025 Task 1 inference package.

    python tools/package.py runs/dcase2025 -o submission --name Schmid_CPJKU_task1 --index 1
    python tools/package.py RUN1 RUN2 -o submission --name Schmid_CPJKU_task1 \\
        --evaluation-set /data/TAU-2025-eval

Each run folder becomes one system (index, index + 1, ...; at most four): its int8 general
model and device models (--float: their float TFLite models), a float front end, and the
challenge's inference API in OUT/NAME/NAME/NAME_K.py; `pip install OUT/NAME` installs it
without asc_keras. --evaluation-set DIR also writes OUT/NAME_K.output.csv, the DCASE output
of every file of DIR/evaluation_setup/fold1_test.csv. OUT/NAME_K.meta.yaml holds the system's
meta information: what the run knows (description, complexity, development results on its
evaluation split), and PLACEHOLDER values for what only the author knows, which the tool
lists. A name not in the challenge's form, an index above 4, a run without the models, a
model over the limits, runs with different class orders or no development dataset: one
line, nothing written.
"""

import json
from pathlib import Path

from asc_keras import cli
from asc_keras.errors import UserError


def classify(system, files):
    """(predictions, classes) of `files` ((path, name, device or None) as predict.collect
    gives them) through system `system`'s packaged model files and front end."""
    from asc_keras.inference import Classifier, device_of, predict, system_front_end

    devices = [listed or device_of(name) for _, name, listed in files]
    front_end = system_front_end(system.run)  # as the package computes its inputs
    config = system.run / "config.yaml"
    models = {d: Classifier(p, config, front_end=front_end) for d, p in system.models.items()}
    predictions, errors, classes = predict([f for f, _, _ in files], devices, models)
    if errors:
        path, reason = errors[0]
        raise UserError(f"cannot classify {path}: {reason}")
    names = {str(f): name for f, name, _ in files}
    for p in predictions:
        p.name = names[p.path]
    return predictions, classes


def evaluation_output(system, evaluation_set, out_file):
    """The DCASE output of system `system` on every file listed in
    `evaluation_set`/evaluation_setup/fold1_test.csv, written to `out_file`."""
    from asc_keras.commands.predict import as_tsv, collect, submission_rows
    from asc_keras.utils import atomic_write_text

    listing = Path(evaluation_set) / "evaluation_setup" / "fold1_test.csv"
    if not listing.is_file():
        raise UserError(f"--evaluation-set: {listing} does not exist")
    try:
        predictions, classes = classify(system, collect([str(listing)]))
    except UserError as error:
        raise UserError(f"--evaluation-set: {error}") from None
    atomic_write_text(out_file, as_tsv(submission_rows(predictions, classes, False), classes))
    return len(predictions)


def meta_file(system, label, kind, out_file):
    """OUT/LABEL.meta.yaml of system `system`: its development results from its evaluation
    split (classified through the packaged models), complexity and description. Returns
    (the overall development results, the placeholders left for the author)."""
    from asc_keras.data.tau22 import read_split
    from asc_keras.run_folder import quantized_folder
    from asc_keras.submission.meta import (
        development_results,
        meta_information,
        placeholders,
        write_meta,
    )

    config = system.config
    records = read_split(system.data_root, config.data.eval_split)
    files = [(system.data_root / r.filename, r.filename, r.device) for r in records]
    predictions, classes = classify(system, files)
    results = development_results(
        [r.label for r in records],
        [p.probabilities for p in predictions],
        [r.device for r in records],
        classes,
    )
    general = json.loads((quantized_folder(system.run) / "summary.json").read_text())
    distilled = general["student"] == "student"  # (else student-no-teacher: labels alone)
    meta = meta_information(
        config, label, system.models, system.complexity, results, kind, distilled
    )
    write_meta(out_file, meta, system.run.resolve())
    return results["overall"], placeholders(meta)


def main(argv=None):
    from asc_keras.submission.package import check_request, write_package

    parser = cli.argument_parser(__doc__)
    parser.add_argument("runs", nargs="+", help="finished run folders, one per system")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--name", required=True, help="submission label, e.g. Schmid_CPJKU_task1")
    parser.add_argument("--index", type=int, default=1, help="index of the first system (1-4)")
    parser.add_argument("--float", action="store_true", help="float models instead of int8")
    parser.add_argument("--evaluation-set", help="dataset folder whose fold1_test.csv to classify")
    parser.add_argument(
        "--data-root",
        help="the development dataset (default: each run's data.root), whose evaluation split "
        "gives the meta file's development results",
    )
    args = parser.parse_args(argv)
    kind = "float" if args.float else "int8"
    systems = check_request(args.runs, args.name, args.index, kind, args.data_root)
    out = Path(args.out)
    labels = {s.index: f"{args.name}_{s.index}" for s in systems}
    metas = [out / f"{labels[s.index]}.meta.yaml" for s in systems]
    outputs = [out / f"{labels[s.index]}.output.csv" for s in systems]
    for path in metas + (outputs if args.evaluation_set else []):
        cli.check_output(path, flag="-o")
    project = write_package(systems, out, args.name, kind)
    print(
        f"wrote {project} (systems {', '.join(str(s.index) for s in systems)}); install it "
        f"with: pip install {project}"
    )
    for system, path in zip(systems, metas):
        overall, left = meta_file(system, labels[system.index], kind, path)
        print(
            f"system {system.index}: development accuracy {overall['accuracy']:.2f} % (macro "
            f"over classes), log loss {overall['logloss']:.3f}; wrote {path}"
        )
        print(f"  fill in: {', '.join(left)}")
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
