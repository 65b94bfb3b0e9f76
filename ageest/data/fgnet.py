"""FG-NET data: file names, the image folder, RGB loading, the manifest and the data fingerprint."""

from __future__ import annotations

import argparse
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ageest.data.imageio import load_rgb  # noqa: F401  (the one decoder; imported from here by callers)
from ageest.data.paths import inside
from ageest.errors import DataError
from ageest.io import write_text_atomic

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Subject (3 digits), 'A', age (2 digits), optional photo letter for a second photo at one age.
_NAME = re.compile(r"(\d{3})a(\d{2})([a-z]?)\.(jpe?g|png)", re.IGNORECASE)


@dataclass(frozen=True)
class Record:
    """One image of the data set, from either producer: an FG-NET-layout folder (`scan_images`)
    or a manifest table (`ageest.data.manifest.read_manifest`); `ageest.data.dataset.read_records`
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
    """The one order of images (splits, split files): by person, age, then name. For FG-NET it is
    the order of the file names; a manifest of the same images under other names keeps it, so it
    gives the same splits (only photos of one person at one age are ordered by their names)."""
    return (r.subject, r.age, r.name)


def parse_name(name: str | Path) -> tuple[int, int, str]:
    """`001A02.JPG` -> (1, 2, ''); `001A43a.JPG` -> (1, 43, 'a'). Case of 'A' and extension is free.

    Raises DataError naming the file when the name is not FG-NET's pattern.
    """
    base = Path(name).name
    m = _NAME.fullmatch(base)
    if not m:
        raise DataError(f"{name}: not an FG-NET image name (expected like 001A02.JPG or 001A43a.JPG)")
    return int(m.group(1)), int(m.group(2)), m.group(3).lower()


def is_image_file(path: Path) -> bool:
    # Names decide: a README or a Thumbs.db in the folder is not data, a `.JPG` always is.
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def scan_images(images_dir: str | Path, check_decode: bool = False) -> list[Record]:
    """Every image of an FG-NET-layout folder, sorted by (subject, age, suffix).

    Non-image files are skipped. Refused with a one-line DataError: a missing or empty folder, an
    unparsable name, a zero-byte file, two names differing only in case, two files for one
    (subject, age, suffix); with `check_decode`, any file that does not decode as an image.
    """
    d = Path(images_dir)
    if not d.is_dir():
        raise DataError(f"image folder not found: {d}")
    records: list[Record] = []
    seen_lower: dict[str, Path] = {}
    seen_key: dict[tuple[int, int, str], Path] = {}
    for p in sorted(d.iterdir()):
        if not is_image_file(p):
            continue
        if p.name.lower() in seen_lower:
            raise DataError(f"{p}: same name as {seen_lower[p.name.lower()].name} but for case")
        seen_lower[p.name.lower()] = p
        inside(d, p, "image")  # a symbolic link out of the folder is not the data set's
        subject, age, suffix = parse_name(p)
        key = (subject, age, suffix)
        if key in seen_key:
            raise DataError(f"{p}: duplicates {seen_key[key].name} (subject {subject}, age {age}"
                            f"{', photo ' + suffix if suffix else ''})")
        seen_key[key] = p
        if p.stat().st_size == 0:
            raise DataError(f"{p}: empty file (0 bytes)")
        records.append(Record(p, subject, age, suffix))
    if not records:
        raise DataError(f"no FG-NET images (*.JPG) in folder: {d}")
    if check_decode:
        for r in records:
            load_rgb(r.path)
    return sorted(records, key=lambda r: (r.subject, r.age, r.suffix))


def subjects_of(records: list[Record]) -> list[int]:
    return sorted({r.subject for r in records})


def manifest_text(records: list[Record]) -> str:
    """image, subject, age per record; records from a manifest add `person` (its subject string):
    the record of how its people were numbered."""
    if any(r.person for r in records):
        lines = ["image\tsubject\tage\tperson"] + [f"{r.name}\t{r.subject}\t{r.age}\t{r.person}" for r in records]
    else:
        lines = ["image\tsubject\tage"] + [f"{r.name}\t{r.subject}\t{r.age}" for r in records]
    return "\n".join(lines) + "\n"


def landmarks_digest(points_dir: str | Path | None, records: list[Record] | None = None) -> str | None:
    """SHA-256 (16 hex) of landmark files' names and bytes; None without a points folder (and
    without manifest records, which name their own).

    With `records`: the landmarks each image aligns with (a manifest's inline x/y points, else the
    `.pts` of `landmarks.landmark_file`: a manifest's own, else FG-NET's lower-case name in the
    folder), '-' for an image that has none, so a point or file edited, added or removed for any of
    them changes it. Without: every `.pts` file in the folder (what a checksum list would cover).
    """
    from ageest.data.landmarks import landmark_file

    if points_dir is None and not any(r.from_table for r in records or ()):
        return None  # (a manifest's records name their own landmarks, with or without a folder)
    d = Path(points_dir) if points_dir is not None else None
    if records is None:
        files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() == ".pts") if d.is_dir() else []
        pairs = [(p.name, p) for p in files]
    else:
        pairs = [(r.name, r.keypoints if r.keypoints is not None else landmark_file(r, d)) for r in records]
    h = hashlib.sha256()
    for name, p in pairs:
        if isinstance(p, tuple):  # a manifest's inline points: their values are the landmarks' bytes
            h.update(f"{name}\tinline\t{hashlib.sha256(repr(p).encode()).hexdigest()}\n".encode())
            continue
        h.update(f"{name}\t{p.name if p else '-'}\t{hashlib.sha256(p.read_bytes()).hexdigest() if p else '-'}\n"
                 .encode())
    return h.hexdigest()[:16]


def data_fingerprint(records: list[Record], points_dir: str | Path | None = None) -> str:
    """Hash of the images' names and bytes (SHA-256 of each, remembered by ageest.data.hashes), and
    with `points_dir` of the landmark files the images align with (`landmarks_digest`): it changes
    when an image is added, removed, renamed or edited in place, whatever its size, or a landmark
    file is edited. Refuses one photo under two people (`check_duplicates`)."""
    from ageest.data.hashes import file_digests

    digests = file_digests(r.path for r in records)
    check_duplicates(records, digests)
    h = hashlib.sha256()
    for r, digest in zip(records, digests):
        h.update(f"{r.name}\t{digest}\n".encode())
    if points_dir is not None:
        h.update(f"landmarks\t{landmarks_digest(points_dir, records)}\n".encode())
    return h.hexdigest()[:16]


def check_duplicates(records: list[Record], digests: list[str]) -> int:
    """Refuse (one line naming both) two images of the same bytes under two people: a copy would
    put one photo in training and in test. Returns how many images repeat another of their person."""
    first: dict[str, Record] = {}
    repeats = 0
    for r, digest in zip(records, digests):
        other = first.setdefault(digest, r)
        if other is r:
            continue
        if other.subject != r.subject:
            raise DataError(f"{r.image or r.path} (subject {r.person or r.subject}) is the same file as "
                            f"{other.image or other.path} (subject {other.person or other.subject}), byte for byte: "
                            "one photo under two people would leak between training and test; remove one")
        repeats += 1
    return repeats


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ageest.data.dataset import add_data_arguments

    add_data_arguments(p)
    p.add_argument("--out", required=True, help="manifest TSV to write (image, subject, age[, person])")
    p.add_argument("--no-decode", action="store_true", help="check names only, do not decode images")


def run(args: argparse.Namespace) -> int:
    """Write the manifest of a data set (image, subject, age), checking every file."""
    from ageest.data.dataset import read_records

    from ageest.data.hashes import file_digests

    records = read_records(args.images, args.root, check_decode=not args.no_decode)
    repeats = check_duplicates(records, file_digests(r.path for r in records))
    write_text_atomic(args.out, manifest_text(records))
    print(f"{len(records)} images, {len(subjects_of(records))} subjects, "
          f"ages {min(r.age for r in records)}-{max(r.age for r in records)} -> {args.out}"
          + (f"; {repeats} image(s) repeat another of the same person byte for byte" if repeats else ""))
    return 0
