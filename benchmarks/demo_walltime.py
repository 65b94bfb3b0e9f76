"""Wall time of the demo study (`config/demo.yaml`, Snakemake included), from an empty folder.

Side by side, in alternating rounds: a subset of the demo (the first N subjects x both losses)
with ageest's fast path and with the reference recipe's pipeline (per-sample PIL in DataLoader
workers, fp32); then, unless --subset-only, the whole demo once. With --against TREE, instead: the
whole demo (with --subset-only, the subset) from this checkout and from TREE (another checkout,
e.g. `git worktree add` of an older commit), in alternating rounds, with the median ratio (TREE / this).

    python benchmarks/demo_walltime.py --cores 4
    python benchmarks/demo_walltime.py --cores 2 --against /tmp/ageest-before --rounds 1 --keep /tmp/demo-ab
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

from suite import add_suite_arguments, alternate, median_ratio, write_figures

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_STYLE = "training:\n  pipeline: plain\n  precision: fp32\n  channels_last: false\n"


def snakemake(tree: Path, workdir: Path, cores: int, extra_configs: list[Path], target: str = "all") -> float:
    """Seconds the demo (up to `target`) takes from `tree` (its Snakefile and its ageest) in the empty `workdir`."""
    shutil.rmtree(workdir, ignore_errors=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(tree / "Snakefile"), "--directory", str(workdir), target,
           "--cores", str(cores), "--resources", "gpu=1", "--quiet", "all",
           "--configfile", str(tree / "config" / "demo.yaml"), *map(str, extra_configs)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])}
    # From the empty folder itself: `python -m` puts its working directory first on sys.path, before
    # PYTHONPATH, so started from a checkout it would plan `tree`'s workflow with that one's ageest.
    workdir.mkdir(parents=True)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    if r.returncode:
        logs = sorted((workdir / ".snakemake" / "log").glob("*.log"))
        raise SystemExit(f"snakemake failed in {workdir}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}\n"
                         + (logs[-1].read_text()[-3000:] if logs else ""))
    return time.perf_counter() - t0


def written(tmp: Path, name: str, text: str) -> Path:
    # A later --configfile is merged into the demo's: nested keys override one by one.
    p = tmp / name
    p.write_text(text)
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=4)
    ap.add_argument("--subset", type=int, default=3, help="subjects in the side-by-side subset")
    ap.add_argument("--subset-only", action="store_true")
    ap.add_argument("--rounds", type=int, default=1, help="measurements of each arm, taking turns")
    ap.add_argument("--against", default=None, help="another checkout: its whole demo against this one's")
    ap.add_argument("--keep", default=None, help="keep each arm's last demo folder here (results/, resources/)")
    add_suite_arguments(ap)
    args = ap.parse_args()
    # --quick: one subject out of 4 synthetic people instead of the demo's 82, one loss, no baselines,
    # up to the tables (the same rules on less work: what it checks is that the arms run and the
    # figures are written).
    target = "results/tables/summary.tsv" if args.quick else "all"
    if args.quick:
        args.subset, args.subset_only, args.rounds = 1, True, 1
    tmp = Path(tempfile.mkdtemp(prefix="ageest-demo-bench-"))
    quick = ("data: {synth_subjects: 4}\nlosses: [mean_variance]\nreference_loss: mean_variance\n"
             "baselines: []\ncompare_with: []\n")
    subset = written(tmp, "subset.yaml", f"subjects: {list(range(1, args.subset + 1))}\n" + (quick if args.quick else ""))
    reference = written(tmp, "reference.yaml", REFERENCE_STYLE)
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load {load:.1f}; snakemake --cores {args.cores} --resources gpu=1 "
          f"--configfile config/demo.yaml", flush=True)
    if args.against:  # the whole demo, or with --subset-only its subset, from both checkouts
        other, part = Path(args.against).resolve(), [subset] if args.subset_only else []
        arms = {"this": lambda: snakemake(ROOT, tmp / "this", args.cores, part, target),
                "against": lambda: snakemake(other, tmp / "against", args.cores, part, target)}
    else:
        arms = {"fast": lambda: snakemake(ROOT, tmp / "fast", args.cores, [subset], target),
                "reference": lambda: snakemake(ROOT, tmp / "reference", args.cores, [subset, reference], target)}
    s = alternate(arms, args.rounds)
    a, b = list(s)
    ratio = median_ratio(s[b], s[a])
    sub = (f"subset ({args.subset} subject{'s' if args.subset > 1 else ''} x {'one loss' if args.quick else 'both losses'}, synthesis and gather "
           f"included{', up to the tables' if args.quick else ''})")
    what = "whole demo" if args.against and not args.subset_only else sub
    print(f"{what}: {a} " + ", ".join(f"{t:.0f} s" for t in s[a]) + f"; {b} " + ", ".join(f"{t:.0f} s" for t in s[b])
          + f"; median ratio {b}/{a} {ratio:.2f}x (load {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)",
          flush=True)
    rows = [{"what": what, "arm": k, "round": i, "seconds": t} for k in s for i, t in enumerate(s[k])]
    if not (args.subset_only or args.against):
        full = snakemake(ROOT, tmp / "full", args.cores, [])
        arms["full"] = None
        folds = list((tmp / "full" / "results" / "folds").glob("*/*/metrics.json"))
        trained = sum(p.parts[-3] not in ("mean", "ridge") for p in folds)  # the baselines' folds train nothing
        print(f"whole demo ({trained} trained folds, {len(folds) - trained} baseline folds): "
              f"{full:.0f} s = {full / 60:.1f} min (load {os.getloadavg()[0]:.1f} at the end)", flush=True)
        rows.append({"what": "whole demo", "arm": "full", "round": 0, "seconds": full})
    write_figures(args.out, rows)
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        for name in arms:
            if (tmp / name).is_dir():
                shutil.move(str(tmp / name), os.path.join(args.keep, name))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
