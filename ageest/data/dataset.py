"""Which producer makes a data set's records: an FG-NET-layout folder, or a manifest table.

Every command that reads images (`split`, `prepare`, `train`, `baseline`, `manifest`) and the
study plan take `--images` as either, and get the same `fgnet.Record`s from `read_records`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ageest.data.fgnet import Record, scan_images

MANIFEST_SUFFIXES = (".tsv", ".csv")


def is_manifest(images: str | Path) -> bool:
    """A manifest is a table file (`.tsv`, `.csv`); anything else is an FG-NET-layout folder."""
    return Path(images).suffix.lower() in MANIFEST_SUFFIXES


def read_records(images: str | Path, root: str | Path | None = None, *, check_decode: bool = False) -> list[Record]:
    """The records of `images`: a manifest's rows (paths under `root`, default the manifest's
    folder; the study plan checks its ages against the training range) or an FG-NET folder's
    files (`root` unused). `check_decode`: decode every image."""
    if is_manifest(images):
        from ageest.data.manifest import read_manifest

        return read_manifest(images, root or None, check_decode=check_decode).records
    return scan_images(images, check_decode=check_decode)


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """`--images` (folder or manifest) and `--root`, as every command that reads the data takes them."""
    p.add_argument("--images", required=True,
                   help="FG-NET-layout image folder, or a manifest table (.tsv/.csv: image, age, subject[, points or x1 y1 ...])")
    p.add_argument("--root", default=None,
                   help="folder a manifest's paths are under (default: the manifest's folder; '' too)")
