"""Fuses teacher logit files (paper eq. 4) and prints every teacher's accuracy per device.

python tools/fuse_teachers.py a.npz b.npz --method fused -o fused.npz --config configs/sm2.yaml
"""

from asc_keras import cli
from asc_keras.config import Config, load_config
from asc_keras.data.pipeline import Splits, with_data_root
from asc_keras.distill import load_logits
from asc_keras.distill.fusion import fusion_report, report_title, sharpening_warning
from asc_keras.evaluation import format_reports


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("logits", nargs="+", help="teacher logit files (.npz, .csv, .pt)")
    parser.add_argument("--method", choices=["averaged", "fused"], default="fused")
    parser.add_argument("-o", "--output", required=True, help="fused logit file (.npz)")
    parser.add_argument("--config", help="config whose data section names the dataset")
    parser.add_argument("--data-root", help="dataset folder with meta.csv")
    args = parser.parse_args(argv)
    config = load_config(args.config) if args.config else Config()
    config = with_data_root(config, args.data_root)
    teachers = [load_logits(path, root=config.data.root) for path in args.logits]
    splits = Splits.open(config)
    fused, reports = fusion_report(teachers, splits)
    data = config.data
    print(format_reports(reports, title=report_title(data.train_split, data.eval_split)))
    print(
        "fused weights per teacher:",
        [round(float(w), 4) for w in fused["fused"].extra["fusion_weights"]],
    )
    print(
        "fused bias per class:", [round(float(b), 4) for b in fused["fused"].extra["fusion_bias"]]
    )
    warning = sharpening_warning(reports, data.eval_split, remedy="--method averaged")
    if warning and args.method == "fused":
        print(warning)
    fused[args.method].save(args.output)
    print(
        f"wrote {args.method} logits of {len(fused[args.method].filenames)} clips to {args.output}"
    )
    return 0


def run():
    """The `asc-keras-fuse-teachers` console script."""
    cli.run(main)


if __name__ == "__main__":
    run()
