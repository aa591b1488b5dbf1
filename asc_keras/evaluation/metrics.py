"""Per-device accuracy report: the figures DCASE Task 1 papers print."""

import numpy as np
import scipy.special

from asc_keras.data.tau22 import CLASSES, DEVICES, REAL_DEVICES, UNSEEN_DEVICES
from asc_keras.utils import format_table

GROUPS = {
    "real": REAL_DEVICES,
    "seen": tuple(d for d in DEVICES if d not in UNSEEN_DEVICES),
    "unseen": UNSEEN_DEVICES,
}


def device_report(labels, logits, devices, classes=CLASSES):
    """Accuracy per device and device group, overall and macro (per class) accuracy, log loss
    and the confusion matrix (rows: true class, columns: predicted), from logits."""
    labels = np.asarray(labels)
    logits = np.asarray(logits, np.float64)
    devices = np.asarray(devices)
    if logits.shape != (len(labels), len(classes)):
        raise ValueError(
            f"logits have shape {logits.shape}; expected {(len(labels), len(classes))}"
        )
    predicted = logits.argmax(axis=1)
    correct = predicted == labels
    log_probs = scipy.special.log_softmax(logits, axis=1)
    confusion = np.zeros((len(classes), len(classes)), int)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    present = confusion.sum(axis=1) > 0
    report = {
        "clips": int(len(labels)),
        "accuracy": float(correct.mean()),
        "macro_class_accuracy": float(per_class[present].mean()),
        "log_loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
        "devices": {
            d: float(correct[devices == d].mean()) for d in DEVICES if (devices == d).any()
        },
        "groups": {
            name: float(correct[np.isin(devices, members)].mean())
            for name, members in GROUPS.items()
            if np.isin(devices, members).any()
        },
        "classes": {c: float(a) for c, a, p in zip(classes, per_class, present) if p},
        "confusion": confusion.tolist(),
    }
    return report


def format_reports(reports, title=None):
    """One row per named report: accuracy (%) per device, groups, overall, log loss."""
    return format_table(*report_table(reports), title=title)


def report_table(reports):
    """The headers and rows of `format_reports` (also the run page's tables)."""
    columns = [d for d in DEVICES if any(d in r["devices"] for r in reports.values())]
    groups = [g for g in GROUPS if any(g in r["groups"] for r in reports.values())]
    rows = []
    for name, r in reports.items():
        rows.append(
            [name]
            + [_percent(r["devices"].get(d)) for d in columns]
            + [_percent(r["groups"].get(g)) for g in groups]
            + [_percent(r["accuracy"]), f"{r['log_loss']:.3f}"]
        )
    headers = ["model"] + [d.upper() for d in columns] + groups + ["overall", "log loss"]
    return headers, rows


def _percent(value):
    return "-" if value is None else f"{100 * value:.2f}"
