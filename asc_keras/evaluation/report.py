"""Writing an evaluation: JSON with every figure and a confusion-matrix picture."""

import json
from pathlib import Path

import numpy as np

from asc_keras.data.tau22 import CLASSES
from asc_keras.errors import UserError
from asc_keras.utils import atomic_path, atomic_write_text


def check_model_io(source, shape, classes, input_shape, num_classes):
    """Raises a UserError naming `source` when a model's input shape (without the batch) or
    class count is not the config's."""
    if tuple(shape) != tuple(input_shape) or classes != num_classes:
        raise UserError(
            f"{source} takes inputs {tuple(shape)} and gives {classes} classes; the config "
            f"gives inputs {tuple(input_shape)} and {num_classes} classes"
        )


def confusion_figure(report, title, small=False):
    """A matplotlib figure of `report`'s confusion matrix, as % of each true class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(report["confusion"], float)
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    classes = CLASSES if len(rates) == len(CLASSES) else [str(i) for i in range(len(rates))]
    figure, axes = plt.subplots(figsize=(5.2, 4.6) if small else (7.5, 6.5))
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    labels = {"fontsize": 7} if small else {}
    axes.set_xticks(range(len(classes)), classes, rotation=60, ha="right", **labels)
    axes.set_yticks(range(len(classes)), classes, **labels)
    for i in range(len(classes)):
        for j in range(len(classes)):
            axes.text(
                j,
                i,
                f"{100 * rates[i, j]:.0f}",
                ha="center",
                va="center",
                fontsize=6 if small else 7,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    heading = {"fontsize": 9} if small else {}
    axes.set_title(f"{title}: accuracy {100 * report['accuracy']:.2f} %", **heading)
    if not small:
        figure.colorbar(image, fraction=0.046)
    figure.tight_layout()
    return figure


def save_confusion_png(report, path, title):
    import matplotlib.pyplot as plt

    figure = confusion_figure(report, title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)


def write_report(report, out_dir, name, title):
    """OUT_DIR/NAME.json and OUT_DIR/NAME_confusion.png."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / f"{name}.json", json.dumps(report, indent=2))
    save_confusion_png(report, out_dir / f"{name}_confusion.png", title)
