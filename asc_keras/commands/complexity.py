"""Parameters, MACs and int8 bytes of DS-FlexiNet under the DCASE limits.

python tools/complexity.py --all            # sm1..sm4 beside paper Table II
python tools/complexity.py sm2 --norm batch
python tools/complexity.py configs/sm2.yaml --json
python tools/complexity.py runs/dcase2025 --rules dcase2025   # every model of a run's system

A run folder: one row per model of its system (the general model and each device model),
int8 (--float: float32) against the chosen rules; the exit status is 1 when one breaks them.
"""

import json
import sys
from pathlib import Path

from asc_keras import cli
from asc_keras.complexity import RULES, count_model, system_complexity, variant_report
from asc_keras.config import load_config
from asc_keras.errors import UserError
from asc_keras.models import NORMS, VARIANTS, ds_flexinet
from asc_keras.utils import format_table


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument(
        "target", nargs="?", help="a variant (sm1..sm4), a YAML config, a .tflite or a run folder"
    )
    parser.add_argument(
        "--rules", default="dcase2025", choices=sorted(RULES), help="limits a run folder is held to"
    )
    parser.add_argument("--float", action="store_true", help="a run folder's float models")
    parser.add_argument("--all", action="store_true", help="every variant beside paper Table II")
    parser.add_argument("--norm", default="residual", choices=NORMS)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    if args.all or args.target is None:
        rows = variant_report(norm=args.norm)
    elif args.target in VARIANTS:
        rows = variant_report([args.target], norm=args.norm)
    elif Path(args.target).is_dir():
        return print_system(args)
    elif args.target.endswith(".tflite"):
        from asc_keras.complexity import count_tflite

        path = Path(args.target)
        counted = count_tflite(cli.read_tflite(path))
        if args.json:
            print(json.dumps(counted, indent=2))
        else:
            print(
                f"{path.name}: {counted['params']} parameters (BatchNorms folded into their "
                f"convolutions), {counted['param_bytes']} bytes of parameters (int8 weights, "
                f"int32 biases), file {counted['file_bytes']} bytes"
            )
        return 0
    elif not Path(args.target).is_file():
        raise UserError(
            f"{args.target!r} is neither a variant ({', '.join(sorted(VARIANTS))}) "
            f"nor an existing config file"
        )
    else:
        model_config = load_config(args.target).model
        model = ds_flexinet(
            model_config.variant,
            num_classes=model_config.num_classes,
            norm=model_config.norm,
            rn_axis=model_config.rn_axis,
        )
        rows = [{"variant": model_config.variant, **count_model(model).as_dict()}]

    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = []
    for r in rows:
        paper = "paper_params" in r
        table.append(
            [
                r["variant"],
                f"{r['params'] / 1e3:.2f}",
                f"{r['paper_params'] / 1e3:.2f}" if paper else "-",
                f"{r['params_ratio']:.3f}" if paper else "-",
                f"{r['macs'] / 1e6:.2f}",
                f"{r['paper_macs'] / 1e6:.2f}" if paper else "-",
                f"{r['macs_ratio']:.3f}" if paper else "-",
                f"{r['param_bytes'] / 1e3:.2f}",
                "yes" if r["within_limits"] else "NO",
            ]
        )
    headers = [
        "variant",
        "params K",
        "paper K",
        "ratio",
        "MACs M",
        "paper M",
        "ratio",
        "int8 KB",
        "DCASE limits",
    ]
    print(format_table(headers, table, title=f"DS-FlexiNet complexity (norm={args.norm})"))
    return 0


def print_system(args):
    """The rows of `system_complexity` for the run folder `args.target`; 1 when a model
    breaks the rules."""
    rules = RULES[args.rules]
    kind = "float" if args.float else "int8"
    rows = system_complexity(args.target, kind, rules)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        table = [
            [
                r["model"],
                f"{r['params']}",
                f"{r['param_bytes']}",
                f"{r['macs'] / 1e6:.2f}",
                "yes" if r["within_limits"] else "NO: " + "; ".join(r["broken"]),
                r["file"],
            ]
            for r in rows
        ]
        headers = ["model", "params", "param bytes", "MACs M", "within limits", "file"]
        limits = f"{rules.max_param_bytes} bytes, {rules.max_macs / 1e6:g} M MACs per model"
        title = f"{args.target} ({kind}) under {rules.title} ({limits})"
        print(format_table(headers, table, title=title))
    over = [r["model"] for r in rows if not r["within_limits"]]
    if over:
        print(f"over the {rules.title} limits: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


def run():
    """The `asc-keras-complexity` console script."""
    cli.run(main)


if __name__ == "__main__":
    run()
