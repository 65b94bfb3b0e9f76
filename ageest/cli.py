"""`ageest` command line: one subcommand per module, user errors as one line and exit 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from ageest import __version__
from ageest.errors import AgeestError, os_error_line

# Each module has add_arguments(parser) and run(args) -> int.
COMMANDS = {
    "synth": "ageest.data.synth",
    "manifest": "ageest.data.reader",
    "prepare": "ageest.pipeline.cache",
    "split": "ageest.data.splits",
    "train": "ageest.train.fold",
    "baseline": "ageest.train.baselines",
    "predict": "ageest.predict",
    "align-preview": "ageest.data.align",
    "gather": "ageest.study.gather",
    "plots": "ageest.study.plots",
}

# Help lines live here, not in the modules: `ageest --help` must not import torch for every command.
_HELP = {
    "synth": "write the synthetic FG-NET-layout data set",
    "manifest": "check a data set and write its manifest (image, subject, age)",
    "prepare": "decode/align/resize every image once into the shared cache",
    "split": "write one fold's split (train/val/test per image)",
    "train": "train leave-one-person-out folds (several: one after another in one process)",
    "baseline": "run the mean / ridge reference methods on folds",
    "predict": "estimate the age of each face in photos",
    "align-preview": "PNG of originals next to their aligned crops",
    "gather": "tables and statistics over all folds",
    "plots": "plots of the study's tables",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ageest", description="Deep age estimation on FG-NET, "
                                     "leave-one-person-out: mean-variance loss vs softmax.")
    parser.add_argument("--version", action="version", version=f"ageest {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in _HELP.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:  # import only the module that runs (torch import is slow)
            importlib.import_module(COMMANDS[name]).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(COMMANDS[args.command]).run(args) or 0)
    except AgeestError as e:
        print(f"ageest {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # one no layer below turned into a message (a read, a log): still one line
        print(f"ageest {args.command}: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ageest {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
