"""Snakemake adapter: unpack FGNET.zip into resources/FGNET/{images,points} whatever its top folder."""

import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from ageest.data.landmarks import default_points_dir
from ageest.rulelog import logged_script

with logged_script(snakemake.log[0], "rule unpack"):  # noqa: F821
    archive, out = Path(snakemake.input[0]), Path(snakemake.output[0])  # noqa: F821
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
        # The folder holding the JPEGs is the images folder, however the archive nests it.
        jpg_dirs = sorted({p.parent for p in Path(tmp).rglob("*") if p.suffix.lower() == ".jpg"})
        if len(jpg_dirs) != 1:
            sys.exit(f"{archive}: expected one folder of .JPG images, found {len(jpg_dirs)}")
        out.mkdir(parents=True)
        shutil.move(str(jpg_dirs[0]), out / "images")
        pts_dirs = sorted({p.parent for p in Path(tmp).rglob("*.pts")})
        if len(pts_dirs) == 1:
            shutil.move(str(pts_dirs[0]), default_points_dir(out / "images"))
    print(f"unpacked {archive} -> {out}", file=sys.stderr)
