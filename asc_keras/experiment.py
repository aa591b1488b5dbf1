"""A grid of recipe runs over seeds, and its results table: the paper's Tables IV and V as one
command (tools/experiment.py).

An experiment file names a base config and, per table, rows that change some of its keys:

    config: sm2.yaml            # relative to this file
    seeds: 3                    # training.seed = the base seed + 0, 1, 2
    tables:
      "Table IV: teacher logits":
        no teacher: {distillation: {enabled: false}}
        fused: {teachers: {fusion: fused}}

The base config's teachers (teachers.train_count with teachers.config) are trained once, in
`<out>/teachers/`, and every distilled row of every seed reads their logits (plus any
teachers.logit_files of the base config). Rows that set another `teachers.folds`,
`data.train_split` or `teachers.config` read a set trained once for those values, in
`<out>/teachers-K-folds/`, `<out>/teachers-SPLIT/`, `<out>/teachers-NAME/` (combined when
several differ). Each (row, seed) is one ordinary run folder,
`<out>/runs/<row>-<hash>/seed-<k>`, named by its resolved config, so two rows with the same
config share their runs. Runs go seed by seed (every row of seed 0
first), each resumed from its last checkpoint when the experiment is rerun after a crash and
skipped once finished.
After every run the results are written again: `results.md`, `results.csv` (mean and std per
device group, float and int8, the QAT drop and the time per run), `runs.csv` (every run) and
`results.png`.
"""

import csv
import dataclasses
import gc
import hashlib
import io
import json
import re
import time
from pathlib import Path

import numpy as np
import yaml

from asc_keras.config import (
    Config,
    ConfigError,
    TeachersConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    read_yaml,
    refuse_unknown_keys,
)
from asc_keras.data.tau22 import DEVICES, UNSEEN_DEVICES
from asc_keras.utils import atomic_write_bytes, atomic_write_text, format_table

GROUPS = ("A", "seen", "unseen", "overall")
PRECISIONS = ("float", "int8")
QAT_DROP_TARGET = 1.0  # points, float - int8 QAT, on the evaluate split
TRAINING_DEVICES = tuple(d for d in DEVICES if d not in UNSEEN_DEVICES)


@dataclasses.dataclass
class Row:
    table: str
    name: str
    config: Config  # before the seed
    folder: str  # under <out>/runs/


@dataclasses.dataclass
class Experiment:
    path: Path
    config_path: Path
    base: Config
    seeds: int
    rows: list


def _merged(base, overrides, key, source):
    """`base` (a plain dict) with `overrides` applied key by key, nested sections merged."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{source}: {key} must be a mapping of config keys, got {overrides!r}")
    merged = dict(base)
    for name, value in overrides.items():
        if isinstance(base.get(name), dict):  # a section: merged key by key
            merged[name] = _merged(base[name], value, f"{key}.{name}", source)
        else:
            merged[name] = value
    return merged


def _config_digest(config):
    text = yaml.safe_dump(config_to_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "row"


def load_experiment(path, seeds=None, tables=None, overrides=()):
    """Reads an experiment file; every row's config is checked here, before anything runs, and
    an error names the file, the table, the row and the key. `seeds` overrides the file's
    count; `tables` (titles or their starts, e.g. "Table IV") keeps only those tables;
    `overrides` (`--set KEY=VALUE` items) change the base config under every row."""
    path = Path(path)
    spec = read_yaml(path, "experiment file")
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: expected a mapping with the keys config, seeds and tables")
    refuse_unknown_keys(spec, ["config", "seeds", "tables"], path)
    if not isinstance(spec.get("config"), str):
        raise ConfigError(f"{path}: key 'config' must name the base config file")
    config_path = path.parent / spec["config"]
    base = load_config(config_path, overrides)
    seeds = spec.get("seeds", 1) if seeds is None else seeds
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ConfigError(f"{path}: key 'seeds' has value {seeds!r}; expected a count >= 1")
    if not isinstance(spec.get("tables"), dict) or not spec["tables"]:
        raise ConfigError(f"{path}: key 'tables' must map table titles to their rows")
    base_dict = config_to_dict(base)
    rows, folders = [], {}
    for table, table_rows in spec["tables"].items():
        if not isinstance(table_rows, dict) or not table_rows:
            raise ConfigError(f"{path}: tables.{table} must map row names to config changes")
        for name, overrides in table_rows.items():
            key = f"tables.{table}.{name}"
            data = _merged(base_dict, overrides or {}, key, path)
            # The grid compares rows itself: no run trains its own teachers or comparison.
            data["distillation"]["compare_without_teacher"] = False
            data["quantization"]["student"] = "distilled"
            config = config_from_dict(data, source=f"{path}: {key}")
            # Named after the first row with this config: later rows share its runs.
            digest = _config_digest(config)
            folder = folders.setdefault(digest, f"{_slug(str(name))}-{digest}")
            rows.append(Row(str(table), str(name), config, folder))
    # Filtered after naming the folders: a row's runs are the same with and without --table.
    if tables is not None:
        titles = list(spec["tables"])
        unknown = [t for t in tables if not any(str(title).startswith(t) for title in titles)]
        if unknown:
            raise ConfigError(
                f"{path}: no table starts with {', '.join(map(repr, unknown))}; its tables: "
                f"{', '.join(map(repr, titles))}"
            )
        rows = [row for row in rows if any(row.table.startswith(t) for t in tables)]
    return Experiment(path, config_path, base, seeds, rows)


def teacher_set_key(config):
    """What decides which teachers a distilled row reads: (teachers.folds, data.train_split,
    teachers.config)."""
    return config.teachers.folds, config.data.train_split, config.teachers.config or ""


def seeded(config, seed):
    training = dataclasses.replace(config.training, seed=config.training.seed + seed)
    return dataclasses.replace(config, training=training)


def with_teachers(config, logit_files):
    """A row's config reading the shared teacher logits instead of training teachers (no
    teachers at all when it does not distil)."""
    if not config.distillation.enabled:
        return dataclasses.replace(config, teachers=TeachersConfig())
    teachers = dataclasses.replace(
        config.teachers, logit_files=[str(f) for f in logit_files], train_count=0, config=None
    )
    return dataclasses.replace(config, teachers=teachers)


TIME_FILE = "experiment-time.json"


def _start_attempt(folder):
    """Records that an attempt on `folder` starts now (experiment-time.json). An attempt that
    was killed never recorded its end: it is counted up to the last file it wrote."""
    path = Path(folder) / TIME_FILE
    spent = json.loads(path.read_text()) if path.is_file() else {"seconds": 0.0, "attempts": 0}
    if "running_since" in spent:
        written = [p.stat().st_mtime for p in Path(folder).rglob("*") if p.is_file()]
        spent["seconds"] += max(0.0, max(written, default=0.0) - spent.pop("running_since"))
    spent["attempts"] += 1
    spent["running_since"] = time.time()
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(spent))
    return time.monotonic()


def _end_attempt(folder, started):
    path = Path(folder) / TIME_FILE
    spent = json.loads(path.read_text())
    spent.pop("running_since", None)
    spent["seconds"] += time.monotonic() - started
    atomic_write_text(path, json.dumps(spent))


def _seconds(folder):
    """Seconds spent on `folder` over every finished (or killed and resumed) attempt."""
    path = Path(folder) / TIME_FILE
    return json.loads(path.read_text())["seconds"] if path.is_file() else None


def _group_accuracies(report):
    return {
        "A": 100 * report["devices"]["a"],
        "seen": 100 * report["groups"]["seen"],
        "unseen": 100 * report["groups"]["unseen"],
        "overall": 100 * report["accuracy"],
    }


def _device_accuracies(report):
    """Accuracy (%) per training device, then unseen and overall: a device-model table row."""
    found = {d.upper(): 100 * a for d, a in report["devices"].items() if d in TRAINING_DEVICES}
    return found | {
        "unseen": 100 * report["groups"]["unseen"],
        "overall": 100 * report["accuracy"],
    }


def run_result(run_dir):
    """The figures of one finished run folder, or None while it is unfinished."""
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    result = {"float": _group_accuracies(summary["reports"]["student"])}
    int8_path = run_dir / "quantized" / "report_int8.json"
    if int8_path.is_file():
        result["int8"] = _group_accuracies(json.loads(int8_path.read_text()))
        result["qat_drop"] = result["float"]["overall"] - result["int8"]["overall"]
    reference_path = run_dir / "quantized" / "report_int8_reference.json"
    if reference_path.is_file():  # TFLite Micro's arithmetic (runs since this report exists)
        reference = _group_accuracies(json.loads(reference_path.read_text()))
        result["qat_drop_reference"] = result["float"]["overall"] - reference["overall"]
    if "device_models" in summary:
        result["device_models"] = {
            name: _device_accuracies(report)
            for name, report in summary["device_models"]["accuracy"].items()
        }
    result["seconds"] = _seconds(run_dir)
    result["teachers"] = {
        name.removesuffix(" (evaluate)"): 100 * report["accuracy"]
        for name, report in summary.get("teachers", {}).items()
        if name.endswith("(evaluate)")
    }
    return result


class Runner:
    """Trains an experiment's teachers once, then every (row, seed) run, and writes the
    results after each. The experiment folder is locked for the runner's life."""

    def __init__(self, experiment, out, data_root=None, verbose=2):
        self.experiment, self.out, self.verbose = experiment, Path(out), verbose
        self.data_root = data_root

    def run_dir(self, row, seed):
        return self.out / "runs" / row.folder / f"seed-{seed}"

    def run(self):
        from asc_keras.run_folder import RunLock

        with RunLock(self.out):
            atomic_write_text(self.out / "experiment.yaml", self.experiment.path.read_text())
            logit_files = self.teachers()
            done = set()
            for seed in range(self.experiment.seeds):
                for row in self.experiment.rows:
                    run_dir = self.run_dir(row, seed)
                    if run_dir in done:
                        continue
                    done.add(run_dir)
                    config = self._resolved(row.config)
                    teachers = logit_files.get(teacher_set_key(config), [])
                    config = seeded(with_teachers(config, teachers), seed)
                    self.run_one(config, run_dir, f"{row.table} / {row.name}, seed {seed}")
                    self.write_results()
        return self.write_results()

    def _resolved(self, config):
        from asc_keras.data.pipeline import with_data_root

        return with_data_root(config, self.data_root)

    def teachers(self):
        """`teacher_set_key` -> the teacher logit files every distilled row with that key
        reads: the base config's own files and the teachers it trains, trained here once
        per key (`teacher_folder`; resumed after a crash). A row on another training split
        never reads teachers that trained on clips outside it."""
        base = self._resolved(self.experiment.base)
        distilled = [
            self._resolved(row.config)
            for row in self.experiment.rows
            if row.config.distillation.enabled
        ]
        return {
            key: self._teacher_set(base, *key)
            for key in sorted({teacher_set_key(config) for config in distilled})
        }

    def teacher_folder(self, folds, split, teacher_file):
        """`teachers/`, with `-K-folds` for K > 1 folds, `-SPLIT` for a training split other
        than the base config's and `-NAME` for another teacher config file than its."""
        base = self.experiment.base
        name = "teachers" + (f"-{folds}-folds" if folds > 1 else "")
        if split != base.data.train_split:
            name += f"-{split}"
        if teacher_file != (base.teachers.config or ""):
            name += f"-{Path(teacher_file).stem}"
        return self.out / name

    def _teacher_set(self, base, folds, split, teacher_file):
        from asc_keras.data.pipeline import Splits
        from asc_keras.distribution import setup_distribution
        from asc_keras.recipe import check_paths, teacher_stage

        base = dataclasses.replace(
            base,
            teachers=dataclasses.replace(base.teachers, folds=folds, config=teacher_file or None),
            data=dataclasses.replace(base.data, train_split=split),
        )
        files = [Path(f).resolve() for f in base.teachers.logit_files]
        teacher_config = check_paths(base, self.experiment.config_path)
        if teacher_config is not None:
            count = base.teachers.train_count
            folder = self.teacher_folder(folds, split, teacher_file)
            trained = [folder / f"teacher-{i}" / "logits.npz" for i in range(count)]
            if not all(path.is_file() for path in trained):
                out_of_fold = f", {folds} folds each" if folds > 1 else ""
                print(f"== experiment: {count} teachers{out_of_fold} in {folder}")
                started = _start_attempt(folder)
                distribution = setup_distribution(base, source=str(self.experiment.config_path))
                splits = Splits.open(base)
                teacher_stage(
                    base,
                    teacher_config,
                    folder,
                    splits,
                    resume=True,
                    verbose=self.verbose,
                    distribution=distribution,
                )
                _end_attempt(folder, started)
                _release_memory()
            files += [path.resolve() for path in trained]
        if not files:
            raise ConfigError(
                f"{self.experiment.path}: its distilled rows need teachers: give "
                f"{self.experiment.config_path.name} teachers.logit_files or "
                f"teachers.train_count > 0"
            )
        return files

    def run_one(self, config, run_dir, title):
        from asc_keras.recipe import run_training
        from asc_keras.run_folder import check_config

        if (run_dir / "summary.json").is_file() and check_config(config, run_dir / "config.yaml"):
            return
        print(f"== experiment: {title} in {run_dir}")
        started = _start_attempt(run_dir)
        run_training(config, run_dir, resume=True, verbose=self.verbose)
        _end_attempt(run_dir, started)
        _release_memory()

    def results(self):
        """Every (row, seed) result that exists, as rows of dicts."""
        found = []
        for row in self.experiment.rows:
            for seed in range(self.experiment.seeds):
                result = run_result(self.run_dir(row, seed))
                if result is not None:
                    found.append({"table": row.table, "row": row.name, "seed": seed, **result})
        return found

    def write_results(self):
        results = self.results()
        table = summarize(self.experiment, results)
        folders = {
            self.run_dir(row, seed)
            for row in self.experiment.rows
            for seed in range(self.experiment.seeds)
        }
        seconds = {
            "teachers": sum(
                _seconds(folder) or 0 for folder in self.out.glob("teachers*") if folder.is_dir()
            ),
            "runs": sum(_seconds(folder) or 0 for folder in folders),
        }
        text = results_markdown(self.experiment, table, seconds)
        atomic_write_text(self.out / "results.md", text)
        atomic_write_text(self.out / "results.csv", _csv(table))
        atomic_write_text(self.out / "runs.csv", _csv(_flat_runs(results)))
        if table:
            atomic_write_bytes(self.out / "results.png", results_plot(self.experiment, table))
        return table


def _release_memory():
    import keras

    keras.backend.clear_session()
    gc.collect()


def _mean_std(values):
    values = np.asarray(values, float)
    if values.size == 0:
        return None, None
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def summarize(experiment, results):
    """One line per (table, row): mean and std over the seeds of every group's accuracy, float
    and int8, the QAT drop (mean and worst) and the seconds per run."""
    lines = []
    for row in experiment.rows:
        mine = [r for r in results if r["table"] == row.table and r["row"] == row.name]
        line = {"table": row.table, "row": row.name, "runs": len(mine)}
        for precision in PRECISIONS:
            for group in GROUPS:
                values = [r[precision][group] for r in mine if precision in r]
                mean, std = _mean_std(values)
                line[f"{precision}_{group}_mean"] = mean
                line[f"{precision}_{group}_std"] = std
        for key in ("qat_drop", "qat_drop_reference"):
            drops = [r[key] for r in mine if key in r]
            line[f"{key}_mean"] = _mean_std(drops)[0]
            line[f"{key}_worst"] = max(drops) if drops else None
        seconds = [r["seconds"] for r in mine if r["seconds"] is not None]
        line["seconds_per_run"] = _mean_std(seconds)[0]
        teachers = [r["teachers"] for r in mine if r["teachers"]]
        line["teachers"] = teachers[0] if teachers else {}
        line["device_models"] = _device_model_means([r for r in mine if "device_models" in r])
        lines.append(line)
    return lines


def _device_model_means(results):
    """{system row: {column: (mean, std)}} over the runs with device models."""
    means = {}
    for name in results[0]["device_models"] if results else ():
        columns = results[0]["device_models"][name]
        means[name] = {
            column: _mean_std([r["device_models"][name][column] for r in results])
            for column in columns
        }
        means[name]["runs"] = len(results)
    return means


def _flat_runs(results):
    flat = []
    for r in results:
        line = {"table": r["table"], "row": r["row"], "seed": r["seed"]}
        for precision in PRECISIONS:
            for group in GROUPS:
                line[f"{precision}_{group}"] = r.get(precision, {}).get(group)
        line["qat_drop"] = r.get("qat_drop")
        line["qat_drop_reference"] = r.get("qat_drop_reference")
        line["seconds"] = r["seconds"]
        flat.append(line)
    return flat


def _csv(lines):
    buffer = io.StringIO()
    lines = [
        {k: v for k, v in line.items() if k not in ("teachers", "device_models")} for line in lines
    ]
    if lines:
        writer = csv.DictWriter(buffer, fieldnames=list(lines[0]), lineterminator="\n")
        writer.writeheader()
        for line in lines:
            writer.writerow({k: "" if v is None else _csv_value(v) for k, v in line.items()})
    return buffer.getvalue()


def _csv_value(value):
    return f"{value:.4f}" if isinstance(value, float) else value


def _cell(mean, std):
    if mean is None:
        return "-"
    return f"{mean:.2f} ± {std:.2f}"


def format_seconds(seconds):
    if seconds is None:
        return "-"
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def results_markdown(experiment, table, seconds=None):
    """The results as Markdown: one table per experiment table, then what they show.
    `seconds`: {"teachers": ..., "runs": ...} spent so far, for the last line."""
    seeds = experiment.seeds
    parts = [
        f"# {experiment.path.name}: accuracy (%) on the evaluate split",
        "",
        f"Mean ± standard deviation over {seeds} seed{'s' if seeds > 1 else ''} "
        f"(training.seed + 0..{seeds - 1}); every row starts from {experiment.config_path.name}. "
        f"int8: the QAT model in LiteRT (builtin kernels); QAT drop: float - int8 overall, "
        f"in points (mean / worst seed); reference kernels: the same with LiteRT's reference "
        f"kernels, TFLite Micro's arithmetic (from runs that report it).",
    ]
    headers = ["row", "runs"]
    headers += [f"float {g}" for g in GROUPS] + [f"int8 {g}" for g in GROUPS]
    headers += ["QAT drop", "reference kernels", "time per run"]
    for title in dict.fromkeys(line["table"] for line in table):
        lines = [line for line in table if line["table"] == title]
        rows = []
        for line in lines:
            cells = [line["row"], f"{line['runs']}/{seeds}"]
            for precision in PRECISIONS:
                cells += [
                    _cell(line[f"{precision}_{g}_mean"], line[f"{precision}_{g}_std"])
                    for g in GROUPS
                ]
            for key in ("qat_drop", "qat_drop_reference"):
                drop, worst = line[f"{key}_mean"], line[f"{key}_worst"]
                cells.append("-" if drop is None else f"{drop:.2f} / {worst:.2f}")
            cells.append(format_seconds(line["seconds_per_run"]))
            rows.append(cells)
        parts += ["", f"## {title}", "", *_markdown_table(headers, rows)]
        parts += [f"- {finding}" for finding in findings(lines, seeds)]
        for line in lines:
            parts += device_models_markdown(line, seeds)
    # One line per teacher set (in-sample and out-of-fold rows read different ones).
    sets = {}
    for line in table:
        if line["teachers"]:
            sets.setdefault(json.dumps(line["teachers"]), []).append(line["row"])
    for key, rows in sets.items():
        listed = ", ".join(f"{name} {value:.2f} %" for name, value in json.loads(key).items())
        readers = "every distilled row" if len(sets) == 1 else f"rows {', '.join(rows)}"
        parts += ["", f"Teachers (logits shared by {readers}): {listed}."]
    if seconds is not None:
        spent = (seconds["teachers"] or 0) + seconds["runs"]
        parts += [
            "",
            f"Time on this machine: {format_seconds(spent)} in all, of which the teachers "
            f"{format_seconds(seconds['teachers'])} (rows with the same config share their "
            f"runs; those count once).",
        ]
    return "\n".join(parts) + "\n"


def device_models_markdown(line, seeds):
    """The device-model table of one row (none without device models): per training device,
    unseen and overall, the general model and the system, float and int8."""
    systems = line["device_models"]
    if not systems:
        return []
    columns = [c for c in next(iter(systems.values())) if c != "runs"]
    rows = [
        [name, f"{figures['runs']}/{seeds}", *(_cell(*figures[c]) for c in columns)]
        for name, figures in systems.items()
    ]
    return [
        "",
        f"### {line['row']}: device models (accuracy % per device)",
        "",
        *_markdown_table(["model", "runs", *columns], rows),
    ]


def findings(lines, seeds):
    """Plain sentences on a table: the order of its rows and the rows whose QAT lost more
    than the target."""
    done = [line for line in lines if line["float_overall_mean"] is not None]
    said = []
    if len(done) < len(lines) or any(line["runs"] < seeds for line in lines):
        said.append(
            f"incomplete: {sum(line['runs'] for line in lines)} of {len(lines) * seeds} runs"
        )
    if len(done) > 1:
        ranked = sorted(done, key=lambda line: -line["float_overall_mean"])
        order = f"{ranked[0]['row']} {ranked[0]['float_overall_mean']:.2f}"
        for better, line in zip(ranked, ranked[1:]):
            same = line["float_overall_mean"] == better["float_overall_mean"]
            order += f" {'=' if same else '>'} {line['row']} {line['float_overall_mean']:.2f}"
        said.append(f"float overall, best first: {order}")
    over = [line for line in done if (line["qat_drop_worst"] or 0) > QAT_DROP_TARGET]
    if over:
        names = ", ".join(f"{line['row']} ({line['qat_drop_worst']:.2f})" for line in over)
        said.append(f"QAT lost more than {QAT_DROP_TARGET:g} point on some seed: {names}")
    elif any(line["qat_drop_worst"] is not None for line in done):
        said.append(f"QAT lost at most {QAT_DROP_TARGET:g} point on every run")
    return said


def _markdown_table(headers, rows):
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]


def results_plot(experiment, table):
    """PNG bytes: per table, the overall accuracy of each row, float and int8, with the
    standard deviation over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = list(dict.fromkeys(line["table"] for line in table))
    figure, axes = plt.subplots(len(titles), 1, figsize=(9, 2.2 + 0.45 * len(table)), squeeze=False)
    for axis, title in zip(axes[:, 0], titles):
        lines = [line for line in table if line["table"] == title]
        positions = np.arange(len(lines))
        for offset, precision in ((-0.2, "float"), (0.2, "int8")):
            means = [line[f"{precision}_overall_mean"] or 0 for line in lines]
            stds = [line[f"{precision}_overall_std"] or 0 for line in lines]
            axis.barh(positions + offset, means, 0.4, xerr=stds, label=precision, capsize=3)
        axis.set_yticks(positions, [line["row"] for line in lines])
        axis.invert_yaxis()
        axis.set_xlabel("overall accuracy (%)")
        axis.set_title(title, fontsize=10)
        axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def print_results(experiment, table):
    """The float overall column of every table, for the console."""
    rows = [
        [
            line["table"],
            line["row"],
            f"{line['runs']}/{experiment.seeds}",
            _cell(line["float_overall_mean"], line["float_overall_std"]),
            _cell(line["int8_overall_mean"], line["int8_overall_std"]),
        ]
        for line in table
    ]
    headers = ["table", "row", "runs", "float overall", "int8 overall"]
    print(format_table(headers, rows, title="Experiment: accuracy (%) on the evaluate split"))
