"""Wall time of a whole study (Snakemake included): runs it and prints the time and what it made.

    python benchmarks/study_walltime.py --directory /scratch/study -- \
        --cores 2 --configfile config/cpu.yaml my-data.yaml

Everything after `--` goes to snakemake. The study resumes after a kill (finished folds are kept,
a fold in progress continues from its saved state); the time printed is then that of the last run
only, and the per-job times in results/benchmarks/ add up the rest.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from suite import add_suite_arguments, write_figures

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--directory", required=True, help="working directory of the study (results/ goes there)")
    ap.add_argument("--json", dest="out", default=None, help=argparse.SUPPRESS)  # the old name of --out
    add_suite_arguments(ap)
    ap.add_argument("snakemake_args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    extra = [a for a in args.snakemake_args if a != "--"]
    if args.quick:  # one subject of the demo out of 4 people, one loss, up to the tables
        quick = Path(args.directory) / "quick.yaml"
        quick.parent.mkdir(parents=True, exist_ok=True)
        quick.write_text("subjects: [1]\nlosses: [mean_variance]\nreference_loss: mean_variance\nbaselines: []\n"
                         "compare_with: []\ndata: {synth_subjects: 4}\n")
        extra = ["results/tables/summary.tsv", "--cores", "2", "--configfile", str(ROOT / "config" / "demo.yaml"),
                 str(quick)]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", args.directory,
           *extra]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores", flush=True)
    print("command:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd).returncode
    wall = time.perf_counter() - t0
    folds = list(Path(args.directory, "results", "folds").glob("*/*/metrics.json"))
    print(f"snakemake exit {rc}; wall time {wall:.0f} s = {wall / 60:.1f} min; {len(folds)} fold outputs",
          flush=True)
    write_figures(args.out, [{"command": " ".join(cmd), "exit": rc, "wall_seconds": wall, "folds": len(folds),
                              "cores": os.cpu_count(), "load": os.getloadavg()[0]}])
    sys.exit(rc)


if __name__ == "__main__":
    main()
