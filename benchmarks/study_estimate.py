"""Time of the full study (every subject x both losses x the recipe's epochs) from measured folds.

Runs K fold jobs at once (`ageest train`, as the workflow would with K concurrent jobs) for each K
given, with a shortened epoch count, and extrapolates each fold to the full recipe from its
history.tsv: startup + head-only epochs x their measured time + full epochs x theirs (training plus
validation). Study time = ceil(folds / K) waves x the slowest fold of a wave. Also prints the
reference-style estimate from the reference pipeline's measured images/s (benchmarks/train_throughput.py).

    python benchmarks/study_estimate.py --images DATA/images --cache CACHE.npy --concurrency 1 4 8
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from suite import add_suite_arguments, quick_images, write_figures


def run_wave(args, k: int, root: Path) -> list[dict]:
    procs = []
    t0 = time.perf_counter()
    for i in range(k):
        out = root / f"k{k}" / f"fold{i}"
        loss = ("mean_variance", "softmax")[i % 2]
        sets = [f"epochs={args.epochs}", f"freeze_epochs={args.freeze_epochs}", f"image_size={args.image_size}",
                "pretrained=none", "save_model=false", "checkpoint_every_s=1e9", f"folds_per_gpu={k}",
                f"device={args.device}", f"threads={args.threads}"]
        cmd = [sys.executable, "-m", "ageest", "train", "--images", args.images, "--leave-subject",
               str(args.subjects[i % len(args.subjects)]), "--loss", loss, "--out", str(out),
               *(["--cache", args.cache] if args.cache else []), "--overwrite"] + [a for s in sets for a in ("--set", s)]
        procs.append((out, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
                      time.perf_counter()))
    folds = []
    for out, p, started in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"fold failed: {err.strip()[-2000:]}")
        wall = time.perf_counter() - started
        m = json.loads((out / "metrics.json").read_text())
        rows = list(csv.DictReader(open(out / "history.tsv"), delimiter="\t"))
        per = [float(r["seconds"]) + float(r.get("val_seconds") or 0) for r in rows]
        head = per[:args.freeze_epochs]
        # The first full epoch carries one-off kernel selection: extrapolate from the later ones.
        full = per[args.freeze_epochs + 1:] or per[args.freeze_epochs:]
        epoch_total = sum(per)
        startup = wall - epoch_total
        t_head = sum(head) / len(head) if head else 0.0
        t_full = sum(full) / len(full)
        est = startup + args.full_freeze * t_head + (args.full_epochs - args.full_freeze) * t_full
        n_img = m["n_train"]
        folds.append({"k": k, "wall": wall, "startup": startup, "t_head": t_head, "t_full": t_full,
                      "train_img_s": n_img / (float(rows[-1]["seconds"]) or 1e-9), "fold_estimate_s": est,
                      "device": m["device"], "n_train": n_img})
    wave_wall = time.perf_counter() - t0
    for f in folds:
        f["wave_wall"] = wave_wall
    return folds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=None, help="FG-NET-layout images (--quick: a small synthetic set)")
    ap.add_argument("--cache", default=None,
                    help="cache from `ageest prepare` at --image-size (default: ageest train's own, made once)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--freeze-epochs", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--full-epochs", type=int, default=100)
    ap.add_argument("--full-freeze", type=int, default=10)
    ap.add_argument("--folds", type=int, default=164, help="folds in the study (82 subjects x 2 losses)")
    ap.add_argument("--subjects", type=int, nargs="+", default=list(range(1, 17)))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--reference-img-s", type=float, default=None,
                    help="reference-style training images/s measured by train_throughput.py, for the ratio")
    ap.add_argument("--json", dest="out", default=None, help=argparse.SUPPRESS)  # the old name of --out
    add_suite_arguments(ap)
    args = ap.parse_args()
    if args.quick:
        args.concurrency, args.epochs, args.freeze_epochs, args.image_size, args.subjects = [1], 2, 1, 32, [1]
        args.threads = 1
    args.images = args.images or quick_images()
    root = Path(tempfile.mkdtemp(prefix="ageest-study-"))
    rows = []
    print(f"{'K':>3} {'fold img/s':>10} {'startup s':>9} {'head ep s':>9} {'full ep s':>9} "
          f"{'fold est s':>10} {'study est min':>13}")
    for k in args.concurrency:
        folds = run_wave(args, k, root)
        rows += folds
        slowest = max(f["fold_estimate_s"] for f in folds)
        study = math.ceil(args.folds / k) * slowest
        for f in folds:
            f["study_estimate_s"] = study
        mean = lambda key: sum(f[key] for f in folds) / len(folds)  # noqa: E731
        print(f"{k:>3} {mean('train_img_s'):>10.0f} {mean('startup'):>9.1f} {mean('t_head'):>9.2f} "
              f"{mean('t_full'):>9.2f} {slowest:>10.0f} {study / 60:>13.1f}", flush=True)
    if args.reference_img_s:
        n_train = rows[0]["n_train"]
        reference_study = args.folds * args.full_epochs * n_train / args.reference_img_s
        best = min(f["study_estimate_s"] for f in rows)
        print(f"reference-style estimate (training images only, {args.reference_img_s:.0f} img/s, one fold at a time): "
              f"{reference_study / 60:.0f} min; best measured estimate {best / 60:.1f} min: "
              f"{reference_study / best:.1f}x faster")
    write_figures(args.out, rows)
    print(f"machine: {os.cpu_count()} cores; device {rows[0]['device']}; "
          f"extrapolated to {args.full_epochs} epochs ({args.full_freeze} head-only) from {args.epochs} "
          f"({args.freeze_epochs} head-only), {args.folds} folds")


if __name__ == "__main__":
    main()
