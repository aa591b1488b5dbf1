"""One page per run: `RUN/report.html`, self-contained (no network, opens from disk).

It holds what the run printed and what its folder keeps: every accuracy table (the same rows
as the console's, from `report_table`), the verdicts (did distillation help, which student
became int8), training curves from each stage's `history.csv` and QAT's history, confusion
matrices, the int8 op list and TFLite Micro figures, the config and the commands that
reproduce the run. The recipe rewrites it atomically at the end of every stage, so an
unfinished run shows what it has; pictures are inline PNGs.
"""

import base64
import csv
import html
import io
import json
import shlex
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from asc_keras.evaluation.metrics import report_table
from asc_keras.evaluation.report import confusion_figure
from asc_keras.mcu.summary import describe_cortex_m4
from asc_keras.utils import atomic_write_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: .9em; }
th, td { padding: .25em .6em; border-bottom: 1px solid #e4e4e4; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: .3em; }
.status { padding: .5em .8em; border-radius: .3em; display: inline-block; }
.done { background: #e3f4e6; } .running { background: #fff4d6; }
.verdict { font-size: 1.05em; } .bad { color: #a3261c; } .good { color: #1d6e2f; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; } .figures img { max-width: 100%; }
"""


INT8_TABLE = "Float vs int8 on {split}: accuracy (%)"  # printed by the QAT stage, shown here
DEVICE_INT8_TABLE = "Device model {device}, float vs int8 on its {split} clips: accuracy (%)"


class RunPage:
    """The page of `run_dir`. `table` and `note` record what a stage found (and rewrite the
    page); `write` renders it with whatever else the folder holds now."""

    def __init__(self, run_dir, config_path=None, data_root=None):
        self.run_dir = Path(run_dir)
        self.config_path = config_path
        self.data_root = data_root
        self.tables = {}  # title -> {row name: device report}, in the order printed
        self.notes = {}  # topic -> sentence
        self.finished = False
        # figure inputs -> <img> tag: a rewrite of the page draws only the figures whose
        # data changed (matplotlib takes most of a page's time).
        self._images = {}

    def table(self, title, reports):
        self.tables[title] = reports
        self.write()

    def note(self, topic, sentence):
        self.notes[topic] = sentence
        self.write()

    def finish(self):
        self.finished = True
        self.write()

    def write(self):
        atomic_write_text(self.run_dir / "report.html", self.render())

    def render(self):
        quantized = _read_json(self.run_dir / "quantized" / "summary.json")
        tables = self.tables
        parts = [
            f"<h1>asc_keras run <code>{_e(self.run_dir.name)}</code></h1>",
            self._status(quantized),
            _notes(self.notes),
            "<h2>Accuracy</h2>",
            *(_html_table(title, reports) for title, reports in tables.items()),
        ]
        if quantized:
            parts.append(_int8_section(quantized))
        images = {}
        image = self._image(images)
        parts += [
            _curves_section(self.run_dir, quantized, image),
            _confusion_section(tables, image),
        ]
        self._images = images  # what this page shows; figures no longer shown are let go
        parts += [self._reproduce(), self._config()]
        body = "\n".join(p for p in parts if p)
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>asc_keras run {_e(self.run_dir.name)}</title><style>{STYLE}</style>"
            f"</head><body>\n{body}\n</body></html>\n"
        )

    def _image(self, drawn):
        """A function (draw, *inputs) -> draw(*inputs), taken from the last rendering when
        its inputs are the same; every image it returns is kept in `drawn`."""

        def image(draw, *inputs):
            key = (draw.__name__, json.dumps(inputs, sort_keys=True, default=_listed))
            if key not in drawn:
                drawn[key] = self._images[key] if key in self._images else draw(*inputs)
            return drawn[key]

        return image

    def _status(self, quantized):
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        stages = [
            p.parent.name
            for p in sorted(self.run_dir.glob("*/last.keras"))
            + sorted(self.run_dir.glob("teachers/*/logits.npz"))
        ]
        if quantized:
            stages.append("quantized")
        state = "finished" if self.finished else "in progress"
        return (
            f"<p class='status {'done' if self.finished else 'running'}'>Run {state}; "
            f"stages done: {_e(', '.join(stages) or 'none yet')}. Page written {now}.</p>"
        )

    def _reproduce(self):
        run = str(self.run_dir)
        config = str(self.config_path or Path(run) / "config.yaml")
        train = ["python", "tools/train.py", config, "--out", run]
        if self.data_root:
            train[3:3] = ["--data-root", str(self.data_root)]
        commands = [
            ("Continue this run after an interruption", [*train, "--resume"]),
            ("The same recipe in a new folder", [*train[:-1], run + "-2"]),
            (
                "Evaluate the int8 model again",
                [
                    "python",
                    "tools/evaluate.py",
                    f"{run}/quantized/model_int8.tflite",
                    f"{run}/config.yaml",
                ],
            ),
        ]
        items = "".join(
            f"<dt>{_e(what)}</dt><dd><pre>{_e(shlex.join(command))}</pre></dd>"
            for what, command in commands
        )
        return f"<h2>Reproduce</h2><dl>{items}</dl>"

    def _config(self):
        path = self.run_dir / "config.yaml"
        text = path.read_text() if path.is_file() else "(not written yet)"
        return f"<h2>Config (<code>config.yaml</code>)</h2><pre>{_e(text)}</pre>"


def _e(text):
    return html.escape(str(text), quote=True)


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _notes(notes):
    if not notes:
        return ""
    items = "".join(f"<li class='verdict'>{_e(sentence)}</li>" for sentence in notes.values())
    return f"<ul>{items}</ul>"


def _html_table(title, reports):
    headers, rows = report_table(reports)
    head = "".join(f"<th class='{'n' if i else ''}'>{_e(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td class='{'n' if i else ''}'>{_e(c)}</td>" for i, c in enumerate(r))
        for r in rows
    )
    return (
        f"<table><caption>{_e(title)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _int8_section(quantized):
    micro = quantized.get("micro", {})
    lines = [
        f"Accuracy drop, float to int8: QAT {quantized['qat_drop_points']:.2f} points"
        + (
            f" ({quantized['qat_drop_points_reference']:.2f} with the reference kernels)"
            if "qat_drop_points_reference" in quantized
            else ""
        )
        + f", post-training quantization {quantized['ptq_drop_points']:.2f} points.",
        f"int8 ops: {', '.join(quantized.get('int8_ops', []))}.",
        f"tf_keras twin of the student: largest logit difference "
        f"{quantized.get('twin_max_difference', float('nan')):.2g}.",
    ]
    kernels = quantized.get("kernels", {})
    if "accuracy" in kernels:
        lines.append(f"The int8 accuracy is from {kernels['accuracy']}.")
    if "accuracy_reference" in kernels:
        lines.append(f"With {kernels['accuracy_reference']}.")
    if micro:
        same = micro.get("micro_same_class_as_reported")
        lines.append(
            f"TFLite Micro: {micro['inputs']} inputs, {micro['mismatched_outputs']} differ from "
            f"LiteRT reference kernels (largest int8 difference "
            f"{micro.get('max_int8_difference', 0)}); arena {micro['arena_bytes']:,} bytes, "
            f"model {micro['model_bytes']:,} bytes"
            + (
                f"; class equal to the reported model's on {same} of {micro['inputs']}."
                if same is not None
                else "."
            )
        )
    if "cortex_m4" in quantized:
        lines.append(describe_cortex_m4(quantized["cortex_m4"]) + ".")
    items = "".join(f"<li>{_e(line)}</li>" for line in lines)
    return (
        f"<h2>int8 model (<code>quantized/model_int8.tflite</code>, from "
        f"<code>{_e(quantized.get('student', 'student'))}/</code>)</h2><ul>{items}</ul>"
    )


def _listed(value):
    """numpy values as JSON can hold them (for the figure cache's keys)."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _history(path):
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def _curves_section(run_dir, quantized, image):
    histories = {
        str(path.parent.relative_to(run_dir)): _history(path)
        for path in sorted(run_dir.glob("teachers/*/history.csv"))
        + sorted(run_dir.glob("teachers/*/fold-*/history.csv"))  # out-of-fold teachers
        + sorted(run_dir.glob("*/history.csv"))
    }
    if quantized and quantized.get("qat_history"):
        histories["QAT (int8)"] = quantized["qat_history"]
    images = [image(_curve_png, name, history) for name, history in histories.items() if history]
    if not images:
        return ""
    return "<h2>Training curves</h2><div class='figures'>" + "".join(images) + "</div>"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure, alt):
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{data}'>"


def _curve_png(name, history):
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, 2, figsize=(6.2, 2.6))
    epochs = np.arange(1, len(next(iter(history.values()))) + 1)
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "--s")):
            if key in history:
                label = "validation" if key.startswith("val_") else "training"
                axis.plot(epochs, history[key], style, markersize=3, label=label)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(name)
    figure.tight_layout()
    return _png(figure, f"training curves of {name}")


def _confusion_section(tables, image):
    images = []
    for title, reports in tables.items():
        if title.startswith("Teacher"):
            continue  # the students and the int8 models: what this run trains
        for name, report in reports.items():
            if "confusion" in report and name not in ("float Keras", "float TFLite"):
                # (the float ones: the student's)
                images.append(image(_confusion_png, name, report))
    if not images:
        return ""
    return (
        "<h2>Confusion matrices (rows: true scene; % of the row)</h2>"
        "<div class='figures'>" + "".join(images) + "</div>"
    )


def _confusion_png(name, report):
    return _png(confusion_figure(report, name, small=True), f"confusion matrix of {name}")
