"""The data set against a `sha256sum`-format list: missing, extra and altered files by name.

The list's names are relative to the image folder, as `cd images && sha256sum -c LIST` reads them:
the images by bare name (`001A02.JPG`), the landmark files as `../points/001a02.pts` (FG-NET's
`points/` folder beside `images/`). A list without `../points/` entries checks the images only.
"""

from __future__ import annotations

import hashlib
import posixpath
from pathlib import Path

from ageest.data.fgnet import is_image_file

LANDMARKS = "../points"  # the landmark files' folder, as the list names it (relative to the images)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _entries(path: str | Path) -> dict[str, str]:
    sums = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def read_sums(path: str | Path, folder: str = "") -> dict[str, str]:
    """{file name: hex digest} from `DIGEST  NAME` lines (`*NAME` for binary mode too), for the
    entries in `folder` of the list: "" the images (the default), LANDMARKS the landmark files.
    Names are returned without the folder."""
    return {posixpath.basename(n): d for n, d in _entries(path).items() if posixpath.dirname(n) == folder}


def _check_folder(folder: Path, expected: dict[str, str], is_member, prefix: str) -> list[tuple[str, list[str]]]:
    present = {p.name: p for p in folder.iterdir() if is_member(p)} if folder.is_dir() else {}
    missing = sorted(set(expected) - set(present))
    extra = sorted(set(present) - set(expected))
    altered = sorted(n for n in set(expected) & set(present) if sha256_file(present[n]) != expected[n])
    return [(what, [prefix + n for n in names]) for what, names in
            (("missing", missing), ("extra", extra), ("altered", altered))]


def _is_landmark_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() == ".pts" and not p.name.startswith(".")


def verify_images(images: str | Path, sums: str | Path) -> tuple[list[str], int, int]:
    """(problems, images listed, landmark files listed): one problem per kind (missing, extra,
    altered), naming the files as the list does; no problems = a match.

    Only image files count as the image set and only `.pts` files in the points folder beside the
    images (where training looks for them) as the landmark set: a README or a Thumbs.db beside
    them is not data. Landmark files are checked when the list has any.
    """
    from ageest.data.landmarks import default_points_dir

    images = Path(images)
    entries = _entries(sums)
    by_folder: dict[str, dict[str, str]] = {}
    for name, digest in entries.items():
        by_folder.setdefault(posixpath.dirname(name), {})[posixpath.basename(name)] = digest
    image_sums, landmark_sums = by_folder.pop("", {}), by_folder.pop(LANDMARKS, {})
    found = _check_folder(images, image_sums, is_image_file, "")
    if landmark_sums:
        more = _check_folder(default_points_dir(images), landmark_sums, _is_landmark_file, LANDMARKS + "/")
        found = [(what, names + extra) for (what, names), (_, extra) in zip(found, more)]
    problems = [f"{what} ({len(names)}): {', '.join(names)}" for what, names in found if names]
    unknown = sorted(n for n in entries if posixpath.dirname(n) in by_folder)
    if unknown:
        problems.append(f"listed outside the images and {LANDMARKS}/ ({len(unknown)}): {', '.join(unknown)}")
    return problems, len(image_sums), len(landmark_sums)
