"""FG-NET 68-point `.pts` landmark files: read, write, and find the one for an image.

Format (FG-NET/IBUG style)::

    version: 1
    n_points: 68
    {
    x y        <- 68 lines, pixel coordinates, origin top-left
    }
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ageest.data.paths import inside
from ageest.errors import DataError

N_POINTS = 68


def read_pts(path) -> np.ndarray:
    """Read a 68-point `.pts` file -> (68, 2) float64 array of (x, y) pixels.

    CRLF line ends and blank lines are tolerated; anything else malformed raises DataError.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"{path}: cannot read landmark file ({e.strerror})") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"{path}: empty landmark file")
    header = {}
    while lines and ":" in lines[0]:
        key, _, value = lines.pop(0).partition(":")
        header[key.strip().lower()] = value.strip()
    if header.get("n_points") != str(N_POINTS):
        raise DataError(f"{path}: expected 'n_points: {N_POINTS}', got {header.get('n_points')!r}")
    if not lines or lines[0] != "{" or lines[-1] != "}":
        raise DataError(f"{path}: points must be enclosed in '{{' and '}}' lines")
    body = lines[1:-1]
    if len(body) != N_POINTS:
        raise DataError(f"{path}: expected {N_POINTS} points, found {len(body)}")
    rows = [ln.split() for ln in body]
    if any(len(r) != 2 for r in rows):
        raise DataError(f"{path}: every point line must hold two finite numbers 'x y'")
    try:
        pts = np.array(rows, dtype=np.float64)
    except ValueError:
        raise DataError(f"{path}: non-numeric coordinate in point list") from None
    if not np.isfinite(pts).all():
        raise DataError(f"{path}: every point line must hold two finite numbers 'x y'")
    return pts


def write_pts(path, points) -> None:
    """Write (68, 2) points (x, y pixels) in FG-NET's `.pts` format."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (N_POINTS, 2):
        raise ValueError(f"points must have shape ({N_POINTS}, 2), got {pts.shape}")
    rows = "\n".join(f"{x:.4f} {y:.4f}" for x, y in pts)
    Path(path).write_text(f"version: 1\nn_points: {N_POINTS}\n{{\n{rows}\n}}\n")


def find_pts(points_dir, image_path) -> Path | None:
    """The `.pts` in `points_dir` whose stem equals the image's, ignoring case; None if absent.

    FG-NET names images upper-case (`001A43a.JPG`) and points lower-case (`001a43a.pts`).
    """
    points_dir, stem = Path(points_dir), Path(image_path).stem.lower()
    exact = points_dir / f"{stem}.pts"
    if exact.is_file():
        return inside(points_dir, exact, "landmark file")
    if not points_dir.is_dir():
        return None
    for p in points_dir.iterdir():
        if p.suffix.lower() == ".pts" and p.stem.lower() == stem:
            return inside(points_dir, p, "landmark file")
    return None


def landmark_file(record, points_dir) -> Path | None:
    """The `.pts` an image aligns with: a manifest record's own (`record.points`, None without
    one), else the one in `points_dir` named like the image (`find_pts`); None if there is none."""
    if record.from_table:
        return record.points
    if points_dir is None or not Path(points_dir).is_dir():
        return None
    return find_pts(points_dir, record.path)


def default_points_dir(images_dir) -> Path:
    """Where the landmark files of an image folder are unless said otherwise: FG-NET's layout,
    `points/` beside `images/` (the download, `ageest synth`, the cache and the previews use it)."""
    return Path(images_dir).parent / "points"
