"""Classifies audio files with a trained model and writes DCASE Task 1 submission rows.

    python tools/predict.py runs/sm2/quantized/model_int8.tflite recordings/ -o scenes.csv
    python tools/predict.py MODEL /data/TAU-2025-eval/evaluation_setup/fold1_test.csv -o out.csv
    python tools/predict.py runs/dcase2025 recordings/ -o scenes.csv    # with device models

MODEL: a `.keras` student (log-mel or waveform in) or a `.tflite` model; the front end comes
from the run folder's config.yaml or --config. Or a run folder: its int8 models (--float: its
float ones), the general one and a device model per device of its device_models section.
INPUT: audio files (any format soundfile reads), folders (searched recursively) or a DCASE
list (`fold1_test.csv`, a `meta.csv`: tab-separated with a `filename` column, paths relative
to the dataset root). A device id is taken from TAU22-style names (`...-s4.wav`), else a
`source_label` / `device` / `device_id` column, else --device; the tool says which model served each
device. OUT: tab-separated `filename`, `scene_label`, then one probability per class (rows
sum to 1); `--format json` writes JSON instead. Files that cannot be read are listed in
OUT.errors.tsv and on stderr, every other file is still classified, and the exit status is 1.
"""

import json
import sys
import time
from pathlib import Path

import soundfile
from tqdm import tqdm

from asc_keras import cli
from asc_keras.errors import UserError
from asc_keras.inference import GENERAL, device_of, load_model, predict
from asc_keras.utils import atomic_write_text, read_tsv_rows

AUDIO_SUFFIXES = {f".{name.lower()}" for name in soundfile.available_formats()} | {".oga"}
DEVICE_COLUMNS = ("source_label", "device", "device_id")


def listed_files(path):
    """(file path, name to report, device or None) of every row of a DCASE list."""
    columns, rows = read_tsv_rows(path)
    if "filename" not in columns:
        raise UserError(
            f"{path}: expected a tab-separated list with a 'filename' column (a DCASE "
            f"fold1_test.csv or meta.csv); found columns {columns}"
        )
    # evaluation_setup/fold1_test.csv names files relative to the folder above it.
    root = path.parent.parent if path.parent.name == "evaluation_setup" else path.parent
    column = next((c for c in DEVICE_COLUMNS if c in columns), None)
    return [(root / r["filename"], r["filename"], r[column] if column else None) for r in rows]


def collect(inputs):
    """Every input as (file path, name to report, device from a list or None)."""
    found = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            found += [(f, str(f), None) for f in files]
        elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
            if not path.is_file():
                raise UserError(f"list {text!r} does not exist")
            found += listed_files(path)
        else:
            found.append((path, text, None))  # a file that cannot be read is reported later
    if not found:
        suffixes = " ".join(sorted(AUDIO_SUFFIXES))
        raise UserError(f"no audio files in {' '.join(inputs)} (searched for {suffixes})")
    return found


def submission_rows(predictions, classes, per_window):
    rows = []
    for p in predictions:
        scores = p.windows if per_window else [p.probabilities]
        for w, probabilities in enumerate(scores):
            row = {"filename": p.name if not per_window else f"{p.name}#{w}"}
            row["scene_label"] = classes[int(probabilities.argmax())]
            row |= {c: float(v) for c, v in zip(classes, probabilities)}
            rows.append(row)
    return rows


def as_tsv(rows, classes):
    lines = ["\t".join(["filename", "scene_label", *classes])]
    for row in rows:
        values = [f"{row[c]:.6f}" for c in classes]
        lines.append("\t".join([row["filename"], row["scene_label"], *values]))
    return "\n".join(lines) + "\n"


def served_lines(predictions, models):
    """One line per device: how many clips it had and which model classified them."""
    counts = {}
    for p in predictions:
        counts[p.device] = counts.get(p.device, 0) + 1
    lines = []
    for device, count in sorted(counts.items()):
        own = device in models and device != GENERAL
        model = models[device] if own else models[GENERAL]
        which = "its device model" if own else "the general model"
        lines.append(f"device {device}: {count} clips, {which} {model.path}")
    return lines


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("model", help=".keras or .tflite model (the general one), or a run folder")
    parser.add_argument("inputs", nargs="+", help="audio files, folders or DCASE lists")
    parser.add_argument("-o", "--out", required=True, help="output file (.csv, or .json)")
    parser.add_argument("--config", help="config the model was trained with (default: its run)")
    parser.add_argument(
        "--device-model",
        action="append",
        default=[],
        metavar="DEVICE=MODEL",
        help="a model for one device (repeatable); the others get MODEL",
    )
    parser.add_argument("--device", default="unknown", help="device of files without one")
    parser.add_argument(
        "--float", action="store_true", help="a run folder's float models instead of int8"
    )
    parser.add_argument(
        "--hop", type=cli.positive(float), help="seconds between windows (default: 1 window)"
    )
    parser.add_argument("--per-window", action="store_true", help="one row per window")
    parser.add_argument("--format", choices=("csv", "json"), help="default: from OUT's suffix")
    parser.add_argument(
        "--batch", type=cli.positive(int), default=64, help="windows per inference batch"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    cli.check_output(out, inputs=[Path(i) for i in args.inputs + [args.model]], flag="-o")

    paths = {GENERAL: args.model}
    for item in args.device_model:
        device, sep, path = item.partition("=")
        if not sep or not device or not path:
            raise UserError(f"--device-model {item!r}: expected DEVICE=MODEL, e.g. a=model_a.keras")
        paths[device] = path
    files = collect(args.inputs)  # a bad list or an empty input set before any model loads
    if Path(args.model).is_dir():
        if args.device_model:
            raise UserError("--device-model: a run folder brings its own device models")
        paths = args.model
    models = load_model(paths, args.config, args.batch, "float" if args.float else "int8")
    # A list's device column, else a TAU22-style name's device, else --device.
    devices = [listed or named for listed, named in ((d, device_of(n)) for _, n, d in files)]
    devices = [args.device if d == "unknown" else d for d in devices]
    start = time.perf_counter()
    with tqdm(total=len(files), unit="file", desc="classifying") as bar:
        audio = [f for f, _, _ in files]
        predictions, errors, classes = predict(audio, devices, models, args.hop, bar)
    seconds = time.perf_counter() - start
    names = {str(f): name for f, name, _ in files}
    for p in predictions:
        p.name = names[p.path]

    rows = submission_rows(predictions, classes, args.per_window)
    fmt = args.format or ("json" if out.suffix == ".json" else "csv")
    if fmt == "json":
        atomic_write_text(out, json.dumps({"classes": classes, "rows": rows}, indent=1))
    else:
        atomic_write_text(out, as_tsv(rows, classes))
    errors_path = out.with_name(out.name + ".errors.tsv")
    if errors:
        lines = ["path\treason"] + [f"{p}\t{' '.join(why.split())}" for p, why in errors]
        atomic_write_text(errors_path, "\n".join(lines) + "\n")
        for path, reason in errors:
            print(f"cannot classify {path}: {reason}", file=sys.stderr)
    elif errors_path.exists():
        errors_path.unlink()  # from an earlier run: it would describe files not in this output
    for line in served_lines(predictions, models):
        print(line)
    windows = sum(len(p.windows) for p in predictions)
    print(
        f"{len(predictions)} clips ({windows} windows) classified in {seconds:.1f} s: "
        f"{len(predictions) / max(seconds, 1e-9):.1f} clips/s; wrote {out}"
        + (f"; {len(errors)} could not be read (see {errors_path})" if errors else "")
    )
    return 1 if errors else 0


def run():
    """The `asc-keras-predict` console script."""
    cli.run(main)


if __name__ == "__main__":
    run()
