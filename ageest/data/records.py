"""The record of one image, whatever produced it, and the one order of records.

Producers: an FG-NET-layout folder (`ageest.data.fgnet.scan_images`) and a manifest table
(`ageest.data.manifest.read_manifest`); `ageest.data.reader.read_records` picks one. Nothing here
imports either, so every module of `ageest.data` can import this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass(frozen=True)
class Record:
    """One image of the data set, from either producer: an FG-NET-layout folder (`scan_images`)
    or a manifest table (`ageest.data.manifest.read_manifest`); `ageest.data.reader.read_records`
    picks the producer."""

    path: Path
    subject: int  # the person's integer id: FG-NET's 3-digit number, a manifest's mapped id
    age: int  # years
    suffix: str = ""  # '', 'a', 'b': several photos at the same age (FG-NET names only)
    image: str = ""  # a manifest's `image` cell (path under its root); '' for FG-NET files
    points: Path | None = None  # a manifest's own landmark file (`points` column), if any
    person: str = ""  # a manifest's `subject` cell, the person's id as the table names it
    # A manifest's own landmarks written in its `x1 y1 x2 y2 ...` columns: 5 (x, y) points in MTCNN's
    # order or 68 in FG-NET's `.pts` order; None where the row has none (or the table no such columns).
    keypoints: tuple[tuple[float, float], ...] | None = None

    @property
    def name(self) -> str:
        """The image's unique name in every table: FG-NET's file name, a manifest's `image` path."""
        return self.image or self.path.name

    @property
    def from_table(self) -> bool:
        """Whether a manifest made it (its landmark file, if any, is `points`; no folder lookup)."""
        return bool(self.image)


def record_order(r: Record) -> tuple:
    """The one order of images (splits, fold split files): by person, age, then name. For FG-NET it is
    the order of the file names; a manifest of the same images under other names keeps it, so it
    gives the same splits (only photos of one person at one age are ordered by their names)."""
    return (r.subject, r.age, r.name)


def subjects_of(records: Sequence[Record]) -> list[int]:
    return sorted({r.subject for r in records})



def subject_ids(names: list[str]) -> dict[str, int]:
    """Integer ids for distinct subject strings: their number when all are whole numbers, else
    1..N in sorted order. Two strings of one number ('1', '001') are refused by the caller."""
    # ASCII digits only: str.isdigit() also passes '²' and other digits int() refuses.
    if all(n.isascii() and n.isdigit() for n in names):
        return {n: int(n) for n in names}
    return {n: i for i, n in enumerate(sorted(set(names)), 1)}


def image_level(records: Sequence[Record]) -> bool:
    """Data without people: a manifest without a subject column (each image its own person)."""
    return bool(records) and all(r.from_table and not r.person for r in records)
