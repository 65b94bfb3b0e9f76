"""The data root is a boundary: a file the data set names must lie inside the folder it is read from."""

from __future__ import annotations

from pathlib import Path

from ageest.errors import DataError


def inside(root: Path, path: Path, where: str) -> Path:
    """`path`, refused in one line where it resolves outside `root` (a symbolic link out of it)."""
    if not Path(path).resolve().is_relative_to(Path(root).resolve()):
        raise DataError(f"{where}: {path} leads outside {root} (a symbolic link to {Path(path).resolve()}): refused")
    return Path(path)
