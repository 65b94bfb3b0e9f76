"""Any data set as a table (`data.source: manifest`): one row per image, read into `records.Record`s.

Columns (a header row names them; tab-separated, or comma-separated for a `.csv` file):

- `image`: the image file, a relative path under the root folder;
- `age`: the person's age in the photo, whole years (`23` or `23.0`);
- `subject`: any string naming the person (leave-one-person-out needs it; without it each image
  is its own person and only image-level protocols run: `kfold:K`, `split_file:PATH`);
- `points` (optional): the image's landmark file in FG-NET's 68-point `.pts` format, under root;
- or the landmarks themselves (optional), as pixel columns `x1 y1 x2 y2 ...`: 5 points in MTCNN's
  order (image-left eye, image-right eye, nose, image-left mouth corner, image-right mouth
  corner) or 68 in FG-NET's `.pts` order. A row's cells are all filled or all empty (no landmarks:
  `align_fallback` / `on_no_face` decide). Not both ways in one table.

People get integer ids (fold folders are results/folds/LOSS/NNN): when every subject string is a
whole number ('001', '17') that number (so a manifest of FG-NET gives FG-NET's own numbers);
otherwise 1, 2, ... in the sorted order of the distinct strings (independent of row order). Each
record keeps its string (`Record.person`) and the manifest rule writes it beside the id.

Every problem is one DataError line naming the manifest, the row (the file's line number, the
header being row 1) and the column.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ageest.data.records import Record, subject_ids
from ageest.data.paths import inside
from ageest.errors import DataError

REQUIRED = ("image", "age")
OPTIONAL = ("subject", "points")
POINT_COUNTS = (5, 68)  # landmarks a table may hold per image in x/y columns: MTCNN's or FG-NET's
_XY = re.compile(r"([xy])(\d+)")


@dataclass(frozen=True)
class Manifest:
    """A manifest read and checked: its records, in row order, and how people were numbered."""

    records: list[Record]
    has_subjects: bool  # a `subject` column: person-level protocols (LOPO) may run
    people: dict[int, str]  # subject id -> the manifest's subject string


def read_manifest(path: str | Path, root: str | Path | None = None, *, ages: tuple[int, int] | None = None,
                  check_decode: bool = False, check_files: bool = True) -> Manifest:
    """Read and check the manifest at `path`; image and points paths are under `root` (default:
    the manifest's folder). `ages` (min_age, max_age): every age must lie in it. `check_decode`:
    decode every image (else its header only is read, enough to tell an image from another file).
    `check_files=False`: the cells only, no image or landmark file opened (a cluster job re-parsing
    the workflow, whose files the submitting process checked; 55,000 headers take about a minute).
    """
    path = Path(path)
    root = Path(root) if root else path.parent
    rows = _rows(path)
    header = rows[0] if rows else []
    where = lambda n, col: f"{path}, row {n}, column {col}"  # noqa: E731
    for col in REQUIRED:
        if col not in header:
            raise DataError(f"{path}, row 1 (header): no '{col}' column (it has: {', '.join(header) or 'none'}; "
                            f"needed: image, age; optional: subject, points or x1 y1 ... landmark columns)")
    if len(rows) < 2:
        raise DataError(f"{path}: no images (a header row and no rows under it)")
    has_subjects = "subject" in header
    col = {c: header.index(c) for c in (*REQUIRED, *OPTIONAL) if c in header}
    xy = _point_columns(path, header)
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
        if check_files:
            _check_image(image, where(n, "image"), check_decode)
        age = _age(cell["age"], where(n, "age"), ages)
        points = _points(root, cell.get("points", ""), where(n, "points"), check_files) if "points" in col else None
        if xy:
            points = _inline_points(row, xy, lambda c: where(n, c))
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
    records = [Record(image, ids[person] if has_subjects else own[text], age, image=text, person=person,
                      **({"keypoints": points} if isinstance(points, tuple) else {"points": points}))
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
    # A path leaving root would make the data set depend on files outside the folder it names;
    # a control character (a tab, a line end) would break every table the name is written into.
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise DataError(f"{where}: {text!r} holds a control character (a tab or a line end); rename the file")
    p = Path(text)
    if p.is_absolute() or ".." in p.parts:
        raise DataError(f"{where}: {text} must be a relative path under the root folder {root}")
    return inside(root, root / p, where)


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


def _points(root: Path, text: str, where: str, check: bool = True) -> Path | None:
    from ageest.data.landmarks import read_pts

    if not text:
        return None  # this image has no landmark file (align_fallback decides what then)
    p = _under_root(root, text, where)
    if not check:
        return p
    if not p.is_file():
        raise DataError(f"{where}: {p} not found")
    try:
        read_pts(p)
    except DataError as e:
        raise DataError(f"{where}: {e}") from None
    return p


def _point_columns(path: Path, header: list[str]) -> list[tuple[str, str, int]]:
    """The landmark columns of a header in point order, [(x name, y name, (x cell, y cell)), ...]
    ([] without any). Refused in one line naming the
    header row: x without its y (or y without x), a set other than x1..xN, y1..yN for N in
    POINT_COUNTS, and x/y columns beside a `points` column (one way per table)."""
    found = {(m[1], int(m[2])): i for i, c in enumerate(header) if (m := _XY.fullmatch(c.strip()))}
    if not found:
        return []
    head = f"{path}, row 1 (header)"
    if "points" in header:
        raise DataError(f"{head}: both a points column and x/y landmark columns; give the landmarks one way")
    xs, ys = ({k for a, k in found if a == axis} for axis in "xy")
    for axis, have, other in (("x", xs, ys), ("y", ys, xs)):
        lone = sorted(have - other)
        if lone:
            mate = "y" if axis == "x" else "x"
            raise DataError(f"{head}: column {axis}{lone[0]} has no {mate}{lone[0]} (each point needs both)")
    n = len(xs)
    if n not in POINT_COUNTS or xs != set(range(1, n + 1)):
        cols = ", ".join(f"x{k}" for k in sorted(xs)[:6]) + (", ..." if n > 6 else "")
        raise DataError(f"{head}: landmark columns {cols} ({n} points): need x1 y1 ... x5 y5 (MTCNN's 5 points) "
                        "or ... x68 y68 (FG-NET's 68)")
    return [(f"x{k}", f"y{k}", (found["x", k], found["y", k])) for k in range(1, n + 1)]


def _inline_points(row: list[str], xy: list, where) -> tuple[tuple[float, float], ...] | None:
    """A row's landmarks from its x/y cells: all empty -> None (no landmarks for this image);
    a cell empty among filled ones, or not a finite number, is refused naming its column."""
    cells = [(name, row[i].strip()) for xn, yn, pos in xy for name, i in zip((xn, yn), pos)]
    filled = [c for c in cells if c[1]]
    if not filled:
        return None
    for name, text in cells:
        if not text:
            raise DataError(f"{where(name)}: empty while {filled[0][0]} is filled (a row's landmarks are all "
                            "there or all empty)")
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not math.isfinite(v):
            raise DataError(f"{where(name)}: '{text}' is not a number (pixels)")
    values = [float(text) for _, text in cells]
    return tuple(zip(values[0::2], values[1::2]))
