"""FG-NET's layout: its file names and the image folder they make records of."""

from __future__ import annotations

import re
from pathlib import Path

from ageest.data.imageio import load_rgb
from ageest.data.records import Record
from ageest.data.paths import inside
from ageest.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Subject (3 digits), 'A', age (2 digits), optional photo letter for a second photo at one age.
_NAME = re.compile(r"(\d{3})a(\d{2})([a-z]?)\.(jpe?g|png)", re.IGNORECASE)


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
