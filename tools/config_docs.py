"""Write config/README.md's table of training keys from ageest.config (the one source of each key).

    python tools/config_docs.py          # rewrite the table
    python tools/config_docs.py --check  # exit 1 if the table is not what the code says
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from ageest.config import training_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "config" / "README.md"
BEGIN = "<!-- training keys: written by tools/config_docs.py from ageest/config.py; edit the code, not this table -->\n"
END = "<!-- end of training keys -->\n"


def rendered(text: str) -> str:
    """`text` (config/README.md) with the table between the markers as ageest.config writes it."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    study = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["training"]
    return head + BEGIN + training_table(study) + END + tail


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = README.read_text()
    if args.check:
        return int(rendered(text) != text)
    README.write_text(rendered(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
