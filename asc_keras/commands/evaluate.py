"""Accuracy per device of a `.tflite` (LiteRT interpreter) or `.keras` model on a split.

    python tools/evaluate.py runs/sm2/quantized/model_int8.tflite configs/sm2.yaml

Writes a JSON file with every figure and each clip's predicted class, and a confusion-matrix
PNG (default next to the model).
"""

from pathlib import Path

import numpy as np

from asc_keras import cli
from asc_keras.audio import feature_shape
from asc_keras.config import load_config
from asc_keras.data.pipeline import make_dataset, open_split, with_data_root
from asc_keras.data.tau22 import CLASSES
from asc_keras.errors import UserError
from asc_keras.evaluation import device_report, format_reports
from asc_keras.evaluation.report import check_model_io, write_report


def load_classifier(path, input_shape, num_classes, reference_kernels=False):
    """A `predict(dataset) -> logits` for the model file, checked against the config."""
    path = Path(path)
    if path.suffix == ".tflite":
        from asc_keras.evaluation.tflite import TFLiteClassifier

        model = TFLiteClassifier(
            cli.read_tflite(path), source=str(path), reference_kernels=reference_kernels
        )
        model.check(input_shape, num_classes)
        return model.predict_dataset
    if not path.is_file():
        raise UserError(f"model file {str(path)!r} does not exist")
    if reference_kernels:
        raise UserError(f"{path}: --reference-kernels applies to .tflite models only")
    if path.suffix == ".keras":
        model = cli.load_keras(path)
        check_model_io(
            path, model.input_shape[1:], model.output_shape[-1], input_shape, num_classes
        )
        return lambda dataset: model.predict(dataset, verbose=0)
    raise UserError(f"{path}: unknown model type {path.suffix!r}; expected .tflite or .keras")


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("model", help=".tflite or .keras model")
    parser.add_argument("config", help="the config the model was trained with")
    parser.add_argument("--split", help="default: the config's data.eval_split")
    parser.add_argument("--data-root", help="dataset folder with meta.csv")
    parser.add_argument("--out", help="folder for the report (default: next to the model)")
    parser.add_argument(
        "--reference-kernels",
        action="store_true",
        help="LiteRT's reference kernels, the arithmetic of TFLite Micro on a microcontroller "
        "(default: the builtin kernels, which round some int8 ops one step apart)",
    )
    args = parser.parse_args(argv)
    config = load_config(args.config)
    predict = load_classifier(
        args.model, feature_shape(config), config.model.num_classes, args.reference_kernels
    )
    split = args.split or config.data.eval_split
    cache = open_split(with_data_root(config, args.data_root), split)
    logits = predict(make_dataset(cache, config, batch_size=config.training.batch_size))
    report = device_report(
        [r.label for r in cache.records], logits, np.array([r.device for r in cache.records])
    )
    report["predicted"] = {  # per clip, for a look at single files
        r.filename: CLASSES[int(i)] for r, i in zip(cache.records, np.argmax(logits, axis=1))
    }
    name = f"{Path(args.model).stem}_{split}" + ("_reference" if args.reference_kernels else "")
    out = Path(args.out) if args.out else Path(args.model).parent
    write_report(report, out, name, f"{Path(args.model).name} on {split}")
    print(format_reports({Path(args.model).name: report}, title=f"{split}: accuracy (%)"))
    print(
        f"macro class accuracy {100 * report['macro_class_accuracy']:.2f} %; report: "
        f"{out / (name + '.json')}, confusion matrix: {out / (name + '_confusion.png')}"
    )
    return 0


def run():
    """The `asc-keras-evaluate` console script."""
    cli.run(main)


if __name__ == "__main__":
    run()
