"""Any data set as a table (`data.source: manifest`): one row per image, read into `fgnet.Record`s.

Columns (a header row names them; tab-separated, or comma-separated for a `.csv` file):

- `image`: the image file, a relative path under the root folder;
- `age`: the person's age in the photo, whole years (`23` or `23.0`);
- `subject`: any string naming the person (leave-one-person-out needs it; without it each image
  is its own person and only image-level protocols run: `kfold:K`, `split_file:PATH`);
- `points` (optional): the image's landmark file in FG-NET's 68-point `.pts` format, under root.

People get integer ids (fold folders are results/folds/LOSS/NNN): when every subject string is a
whole number ('001', '17') that number (so a manifest of FG-NET gives FG-NET's own numbers);
otherwise 1, 2, ... in the sorted order of the distinct strings (independent of row order). Each
record keeps its string (`Record.person`) and the manifest rule writes it beside the id.

Every problem is one DataError line naming the manifest, the row (the file's line number, the
header being row 1) and the column.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ageest.data.fgnet import Record
from ageest.errors import DataError

REQUIRED = ("image", "age")
OPTIONAL = ("subject", "points")


@dataclass(frozen=True)
class Manifest:
    """A manifest read and checked: its records, in row order, and how people were numbered."""

    records: list[Record]
    has_subjects: bool  # a `subject` column: person-level protocols (LOPO) may run
    people: dict[int, str]  # subject id -> the manifest's subject string


def subject_ids(names: list[str]) -> dict[str, int]:
    """Integer ids for distinct subject strings: their number when all are whole numbers, else
    1..N in sorted order. Two strings of one number ('1', '001') are refused by the caller."""
    if all(n.isdigit() for n in names):
        return {n: int(n) for n in names}
    return {n: i for i, n in enumerate(sorted(set(names)), 1)}


def read_manifest(path: str | Path, root: str | Path | None = None, *, ages: tuple[int, int] | None = None,
                  check_decode: bool = False) -> Manifest:
    """Read and check the manifest at `path`; image and points paths are under `root` (default:
    the manifest's folder). `ages` (min_age, max_age): every age must lie in it. `check_decode`:
    decode every image (else its header only is read, enough to tell an image from another file).
    """
    path = Path(path)
    root = Path(root) if root else path.parent
    rows = _rows(path)
    header = rows[0] if rows else []
    where = lambda n, col: f"{path}, row {n}, column {col}"  # noqa: E731
    for col in REQUIRED:
        if col not in header:
            raise DataError(f"{path}, row 1 (header): no '{col}' column (it has: {', '.join(header) or 'none'}; "
                            f"needed: image, age; optional: subject, points)")
    if len(rows) < 2:
        raise DataError(f"{path}: no images (a header row and no rows under it)")
    has_subjects = "subject" in header
    col = {c: header.index(c) for c in (*REQUIRED, *OPTIONAL) if c in header}
    seen: dict[Path, int] = {}
    parsed = []
    for n, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise DataError(f"{where(n, 'image')}: {len(row)} cells where the header has {len(header)}")
        cell = {c: row[i].strip() for c, i in col.items()}
        person = cell.get("subject", "")
        if has_subjects and not person:
            raise DataError(f"{where(n, 'subject')}: empty (every image needs its person's id)")
        if not cell["image"]:
            raise DataError(f"{where(n, 'image')}: empty" + (f": subject '{person}' has no image here" if person else ""))
        image = _under_root(root, cell["image"], where(n, "image"))
        if image.resolve() in seen:
            raise DataError(f"{where(n, 'image')}: {cell['image']} is also row {seen[image.resolve()]} (a duplicate image)")
        seen[image.resolve()] = n
        _check_image(image, where(n, "image"), check_decode)
        age = _age(cell["age"], where(n, "age"), ages)
        points = _points(root, cell.get("points", ""), where(n, "points")) if "points" in col else None
        parsed.append((n, image, cell["image"], age, person, points))
    ids = subject_ids([p[4] for p in parsed]) if has_subjects else {}
    first: dict[int, tuple[str, int]] = {}
    for n, *_, person, _points_path in parsed:
        if not has_subjects:
            continue
        sid = ids[person]
        other = first.setdefault(sid, (person, n))
        if other[0] != person:
            raise DataError(f"{where(n, 'subject')}: '{person}' and '{other[0]}' (row {other[1]}) are both person {sid}; "
                            "write one person's id one way")
    # No people: each image is its own person (ids 1..N in the order of the image paths, not of the
    # rows), so only image-level protocols run, and every table says so (protocols.image_level).
    own = {text: i for i, text in enumerate(sorted(p[2] for p in parsed), 1)}
    records = [Record(image, ids[person] if has_subjects else own[text], age, image=text, points=points, person=person)
               for _n, image, text, age, person, points in parsed]
    return Manifest(records, has_subjects, {sid: person for person, sid in ids.items()})


def _rows(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the manifest ({getattr(e, 'strerror', None) or e})") from None
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    return [r for r in csv.reader(text.splitlines(), delimiter=delimiter) if any(c.strip() for c in r)]


def _under_root(root: Path, text: str, where: str) -> Path:
    # A path leaving root would make the data set depend on files outside the folder it names.
    p = Path(text)
    if p.is_absolute() or ".." in p.parts:
        raise DataError(f"{where}: {text} must be a relative path under the root folder {root}")
    return root / p


def _check_image(image: Path, where: str, decode: bool) -> None:
    from PIL import Image, UnidentifiedImageError

    from ageest.data.imageio import load_rgb

    if not image.is_file():
        raise DataError(f"{where}: {image} not found")
    try:
        if decode:
            load_rgb(image)
        else:
            with Image.open(image) as im:
                im.size  # the header: an image format PIL knows, and its size
    except (DataError, UnidentifiedImageError, OSError) as e:
        raise DataError(f"{where}: {image} is not a readable image ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def _age(text: str, where: str, ages: tuple[int, int] | None) -> int:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: '{text}' is not a number of years") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise DataError(f"{where}: '{text}' is not a number of years")
    if value != int(value):
        # One age class per year: a fraction would be silently rounded by every loss.
        raise DataError(f"{where}: {text} is not a whole number of years")
    if ages is not None and not ages[0] <= value <= ages[1]:
        raise DataError(f"{where}: {int(value)} lies outside min_age..max_age ({ages[0]}..{ages[1]}); "
                        "widen them in training")
    return int(value)


def _points(root: Path, text: str, where: str) -> Path | None:
    from ageest.data.landmarks import read_pts

    if not text:
        return None  # this image has no landmark file (align_fallback decides what then)
    p = _under_root(root, text, where)
    if not p.is_file():
        raise DataError(f"{where}: {p} not found")
    try:
        read_pts(p)
    except DataError as e:
        raise DataError(f"{where}: {e}") from None
    return p
