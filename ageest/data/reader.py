"""Which producer makes a data set's records (an FG-NET-layout folder, or a manifest table), and
`ageest manifest`, which writes what it read.

Every command that reads images (`split`, `prepare`, `train`, `baseline`, `manifest`) and the
study plan take `--images` as either, and get the same `records.Record`s from `read_records`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ageest.data.fgnet import scan_images
from ageest.data.manifest import read_manifest
from ageest.data.records import Record, subjects_of
from ageest.io import write_text_atomic

MANIFEST_SUFFIXES = (".tsv", ".csv")


def is_manifest(images: str | Path) -> bool:
    """A manifest is a table file (`.tsv`, `.csv`); anything else is an FG-NET-layout folder."""
    return Path(images).suffix.lower() in MANIFEST_SUFFIXES


def read_records(images: str | Path, root: str | Path | None = None, *, check_decode: bool = False) -> list[Record]:
    """The records of `images`: a manifest's rows (paths under `root`, default the manifest's
    folder; the study plan checks its ages against the training range) or an FG-NET folder's
    files (`root` unused). `check_decode`: decode every image."""
    if is_manifest(images):
        return read_manifest(images, root or None, check_decode=check_decode).records
    return scan_images(images, check_decode=check_decode)


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """`--images` (folder or manifest) and `--root`, as every command that reads the data takes them."""
    p.add_argument("--images", required=True,
                   help="FG-NET-layout image folder, or a manifest table (.tsv/.csv: image, age, subject[, points or x1 y1 ...])")
    p.add_argument("--root", default=None,
                   help="folder a manifest's paths are under (default: the manifest's folder; '' too)")


def manifest_text(records: list[Record]) -> str:
    """image, subject, age per record; records from a manifest add `person` (its subject string):
    the record of how its people were numbered."""
    if any(r.person for r in records):
        lines = ["image\tsubject\tage\tperson"] + [f"{r.name}\t{r.subject}\t{r.age}\t{r.person}" for r in records]
    else:
        lines = ["image\tsubject\tage"] + [f"{r.name}\t{r.subject}\t{r.age}" for r in records]
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    p.add_argument("--out", required=True, help="manifest TSV to write (image, subject, age[, person])")
    p.add_argument("--no-decode", action="store_true", help="check names only, do not decode images")


def run(args: argparse.Namespace) -> int:
    """Write the manifest of a data set (image, subject, age), checking every file."""
    from ageest.data.fingerprint import check_duplicates
    from ageest.data.hashes import file_digests

    records = read_records(args.images, args.root, check_decode=not args.no_decode)
    repeats = check_duplicates(records, file_digests(r.path for r in records))
    write_text_atomic(args.out, manifest_text(records))
    print(f"{len(records)} images, {len(subjects_of(records))} subjects, "
          f"ages {min(r.age for r in records)}-{max(r.age for r in records)} -> {args.out}"
          + (f"; {repeats} image(s) repeat another of the same person byte for byte" if repeats else ""))
    return 0
