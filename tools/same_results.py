"""Run one study with two checkouts of ageest, one after the other, and compare every fold: the
check that a refactor moved no result (same inputs, same fold MAEs, same predictions).

    git worktree add /tmp/base <commit>       # the code before
    python tools/same_results.py /tmp/base . --configfile config/demo.yaml --out /tmp/same

Each checkout runs its own Snakefile with its own package first on PYTHONPATH (the `ageest`
command beside this Python imports it from there) in OUT/base and OUT/new. Then every fold's
metrics.json (test MAE, validation MAE, best epoch) and predictions.tsv are compared; it prints
one line per method and exits 1 if anything differs or a fold is missing on either side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

COMPARED = ("test_mae", "val_mae", "best_epoch", "n_test")


def run_study(tree: Path, workdir: Path, snakemake_args: list[str]) -> float:
    """Seconds the study took with the package of `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(tree.resolve() / "Snakefile"), "--directory", str(workdir),
           *snakemake_args]
    t0 = time.time()
    # Run from the study's own folder: `python -m` puts its working directory first on sys.path,
    # before PYTHONPATH, so started from a checkout it would parse the workflow with that one's ageest.
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir.with_suffix(".log"), "w") as log:
        subprocess.run(cmd, env=env, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    return time.time() - t0


def folds(workdir: Path) -> dict[str, Path]:
    root = workdir / "results" / "folds"
    return {str(p.parent.relative_to(root)): p.parent for p in sorted(root.glob("**/metrics.json"))}


def compare(base: Path, new: Path) -> tuple[dict[str, list[int]], list[str]]:
    """{method: [folds compared, folds differing]} and the lines naming each difference."""
    a, b = folds(base), folds(new)
    problems = [f"only in {side}: {k}" for side, x, y in (("base", a, b), ("new", b, a)) for k in sorted(set(x) - set(y))]
    counts: dict[str, list[int]] = {}
    for key in sorted(set(a) & set(b)):
        ma, mb = (json.loads((d[key] / "metrics.json").read_text()) for d in (a, b))
        method = key.split("/")[0]
        c = counts.setdefault(method, [0, 0])
        c[0] += 1
        diff = [k for k in COMPARED if ma.get(k) != mb.get(k)]
        if (a[key] / "predictions.tsv").read_bytes() != (b[key] / "predictions.tsv").read_bytes():
            diff.append("predictions.tsv")
        if diff:
            c[1] += 1
            problems.append(f"{key}: {', '.join(diff)} differ (test MAE {ma.get('test_mae')} vs {mb.get('test_mae')})")
    return counts, problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", type=Path, help="checkout of the code before")
    p.add_argument("new", type=Path, help="checkout of the code after")
    p.add_argument("--configfile", required=True, help="the study's config, as each checkout names it")
    p.add_argument("--out", type=Path, required=True, help="folder for OUT/base and OUT/new")
    p.add_argument("--cores", default="2")
    p.add_argument("--config", nargs="*", default=[], help="Snakemake --config overrides, e.g. subjects=[1,2]")
    args = p.parse_args(argv)
    seconds = {}
    for side, tree in (("base", args.base), ("new", args.new)):
        work = (args.out / side).resolve()
        extra = ["--config", *args.config] if args.config else []
        seconds[side] = run_study(tree, work, ["--cores", args.cores, "--configfile", str(tree.resolve() / args.configfile), *extra])
    counts, problems = compare(args.out / "base", args.out / "new")
    for method, (n, bad) in counts.items():
        print(f"{method}: {n} folds compared, {bad} differ")
    print(f"wall: base {seconds['base']:.0f} s, new {seconds['new']:.0f} s")
    for line in problems:
        print(line)
    print("IDENTICAL" if not problems and counts else "DIFFERENT")
    return 0 if not problems and counts else 1


if __name__ == "__main__":
    sys.exit(main())
