"""Wall time of the demo study (`config/demo.yaml`, Snakemake included), from an empty folder.

Side by side in one run: a subset of the demo (first N subjects x both losses) with ageest's fast
path and with the seed-style pipeline (per-sample PIL in DataLoader workers, fp32), then, unless
--subset-only, the whole demo (every subject x both losses) with the fast path.

    python benchmarks/demo_walltime.py --cores 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED_STYLE = "training:\n  pipeline: plain\n  precision: fp32\n  channels_last: false\n"


def snakemake(workdir: Path, cores: int, extra_configs: list[Path]) -> float:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", str(cores), "--resources", "gpu=1", "--quiet", "all",
           "--configfile", str(ROOT / "config" / "demo.yaml"), *map(str, extra_configs)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"snakemake failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def merged(tmp: Path, name: str, text: str) -> Path:
    # A later --configfile is merged into the demo's: nested keys override one by one.
    p = tmp / name
    p.write_text(text)
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=4)
    ap.add_argument("--subset", type=int, default=3, help="subjects in the side-by-side subset")
    ap.add_argument("--subset-only", action="store_true")
    ap.add_argument("--keep", default=None, help="keep the whole demo's folder here (results/, resources/)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ageest-demo-bench-"))
    subset = merged(tmp, "subset.yaml", f"subjects: {list(range(1, args.subset + 1))}\n")
    seed = merged(tmp, "seed.yaml", SEED_STYLE)
    print(f"machine: {os.cpu_count()} cores; snakemake --cores {args.cores} --resources gpu=1 "
          f"--configfile config/demo.yaml", flush=True)
    fast = snakemake(tmp / "fast", args.cores, [subset])
    slow = snakemake(tmp / "seed", args.cores, [subset, seed])
    print(f"subset ({args.subset} subjects x 2 losses, data synthesis and gather included): "
          f"seed-style {slow:.0f} s, fast {fast:.0f} s, ratio {slow / fast:.2f}x", flush=True)
    if not args.subset_only:
        full = snakemake(tmp / "full", args.cores, [])
        folds = list((tmp / "full" / "results" / "folds").glob("*/*/metrics.json"))
        trained = sum(p.parts[-3] not in ("mean", "ridge") for p in folds)  # the baselines' folds train nothing
        print(f"whole demo ({trained} trained folds, {len(folds) - trained} baseline folds): "
              f"{full:.0f} s = {full / 60:.1f} min", flush=True)
        if args.keep:
            shutil.move(str(tmp / "full"), args.keep)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
