"""The image set against a `sha256sum`-format list: missing, extra and altered images by name."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .fgnet import is_image_file


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_sums(path: str | Path) -> dict[str, str]:
    """{file name: hex digest} from `DIGEST  NAME` lines (`*NAME` for binary mode too)."""
    sums = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def verify_images(images: str | Path, sums: str | Path) -> tuple[list[str], int]:
    """(problems, images listed): one entry per kind of problem, naming the files; none = a match.

    Only image files count as the image set: a README or a Thumbs.db beside them is not data.
    """
    expected = read_sums(sums)
    present = {p.name: p for p in Path(images).iterdir() if is_image_file(p)}
    missing = sorted(set(expected) - set(present))
    extra = sorted(set(present) - set(expected))
    altered = sorted(n for n in set(expected) & set(present) if sha256_file(present[n]) != expected[n])
    found = [f"{what} ({len(names)}): {', '.join(names)}"
             for what, names in (("missing", missing), ("extra", extra), ("altered", altered)) if names]
    return found, len(expected)
