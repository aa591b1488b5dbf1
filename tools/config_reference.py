"""Writes docs/config.md, the reference of every config key, from asc_keras/config.py.

python tools/config_reference.py [-o docs/config.md]
"""

import argparse
from pathlib import Path

from asc_keras.config_reference import reference
from asc_keras.utils import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", default=str(ROOT / "docs" / "config.md"))
    args = parser.parse_args(argv)
    atomic_write_text(args.out, reference())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
