"""Snakemake adapter: fetch the public FGNET.zip once (http(s):// or file://) into resources/."""

import shutil
import sys
import urllib.request
from pathlib import Path

from ageest.rulelog import logged_script

with logged_script(snakemake.log[0], "rule download"):  # noqa: F821
    url, out = snakemake.params.url, Path(snakemake.output[0])  # noqa: F821
    tmp = out.with_suffix(out.suffix + ".part")
    print(f"downloading {url} -> {out}", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=120) as response, open(tmp, "wb") as f:
        shutil.copyfileobj(response, f)
    tmp.replace(out)
    print(f"{out.stat().st_size} bytes", file=sys.stderr)
