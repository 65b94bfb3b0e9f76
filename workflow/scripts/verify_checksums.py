"""Snakemake adapter: verify an image folder file by file against a sha256sum-format list.

Missing, extra (not in the list) and altered images are named, and the job fails before any
training starts. Only image files count as the image set (a README or Thumbs.db is not data).
"""

import hashlib
import sys
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_sums(path):
    expected = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            expected[name.strip().lstrip("*")] = digest.lower()
    return expected


def problems(images, sums):
    expected = read_sums(sums)
    present = {p.name: p for p in Path(images).iterdir()
               if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")}
    missing = sorted(set(expected) - set(present))
    extra = sorted(set(present) - set(expected))
    altered = sorted(n for n in set(expected) & set(present) if sha256(present[n]) != expected[n])
    found = [f"{what} ({len(names)}): {', '.join(names)}"
             for what, names in (("missing", missing), ("extra", extra), ("altered", altered)) if names]
    return found, len(expected)


if __name__ == "__main__":
    log = open(snakemake.log[0], "w")  # noqa: F821
    found, n = problems(snakemake.params.images, snakemake.input.sums)  # noqa: F821
    if found:
        msg = f"{snakemake.params.images} does not match {snakemake.input.sums}: " + "; ".join(found)  # noqa: F821
        print(msg, file=log)
        sys.exit(msg)
    Path(snakemake.output[0]).write_text(f"{n} images match {snakemake.input.sums}\n")  # noqa: F821
    print(f"{n} images match {snakemake.input.sums}", file=log)
