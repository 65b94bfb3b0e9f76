"""Snakemake adapter: verify the images and their landmark files against the project's SHA-256
list (ageest.data.checksums.verify_images); missing, extra and altered files stop the run by name."""

import sys
from pathlib import Path

from ageest.data.checksums import verify_images
from ageest.rulelog import logged_script

if __name__ == "__main__":
    with logged_script(snakemake.log[0], "rule verify_checksums"):  # noqa: F821
        found, n_images, n_landmarks = verify_images(snakemake.params.images, snakemake.input.sums)  # noqa: F821
        if found:
            sys.exit(f"{snakemake.params.images} does not match {snakemake.input.sums}: " + "; ".join(found))  # noqa: F821
        ok = f"{n_images} images and {n_landmarks} landmark files match {snakemake.input.sums}"  # noqa: F821
        Path(snakemake.output[0]).write_text(ok + "\n")  # noqa: F821
        print(ok)
