"""Snakemake adapter: verify the image folder against the project's SHA-256 list
(ageest.checksums.verify_images); missing, extra and altered images stop the run by name."""

import sys
from pathlib import Path

from ageest.checksums import verify_images

if __name__ == "__main__":
    log = open(snakemake.log[0], "w")  # noqa: F821
    found, n = verify_images(snakemake.params.images, snakemake.input.sums)  # noqa: F821
    if found:
        msg = f"{snakemake.params.images} does not match {snakemake.input.sums}: " + "; ".join(found)  # noqa: F821
        print(msg, file=log)
        sys.exit(msg)
    Path(snakemake.output[0]).write_text(f"{n} images match {snakemake.input.sums}\n")  # noqa: F821
    print(f"{n} images match {snakemake.input.sums}", file=log)
