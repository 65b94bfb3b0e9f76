"""Test MAE of a few folds under several variants of the recipe, side by side.

Used for: the fast path against the plain per-sample pipeline (same MAE within seed noise?), and
aligned against unaligned faces. Each variant is a set of config overrides on top of --set.
`--reuse NAME=DIR` takes a variant's folds from DIR/NNN/metrics.json instead (e.g. a finished
study's results/folds/mean_variance, run with the same recipe); `--reference NAME` then prints each
variant's paired per-subject test-MAE difference against it, with a bootstrap 95% CI.

    python tools/compare_folds.py --images FGNET/images --subjects 1 2 3 \
        --set image_size=64 epochs=12 pretrained=none \
        --variant fast: --variant plain:pipeline=plain,precision=fp32,channels_last=false
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

from ageest.config import load_config
from ageest.train.fold import run_fold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--subjects", type=int, nargs="+", required=True)
    ap.add_argument("--loss", default="mean_variance")
    ap.add_argument("--set", nargs="*", default=[], help="overrides for every variant")
    ap.add_argument("--reuse", action="append", default=[], metavar="NAME=DIR",
                    help="a variant whose folds are already in DIR/NNN/metrics.json")
    ap.add_argument("--reference", default=None, help="variant the others are compared with, per subject")
    ap.add_argument("--variant", action="append", default=[], help="NAME:key=value,key=value (lists in brackets, e.g. lr_milestones=[10,15])")
    ap.add_argument("--json", default=None)
    ap.add_argument("--out", default=None,
                    help="folder for the variants' folds (OUT/NAME/NNN; default: a new temporary folder), "
                         "so that runs in parallel processes can be compared afterwards with --reuse")
    args = ap.parse_args()
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ageest-compare-"))
    rows = []
    for spec in args.reuse:
        name, _, folder = spec.partition("=")
        for s in args.subjects:
            m = json.loads((Path(folder) / f"{s:03d}" / "metrics.json").read_text())
            rows.append({"variant": name, "subject": s, "n_test": m["n_test"], "test_mae": m["test_mae"],
                         "val_mae": m["val_mae"], "best_epoch": m["best_epoch"], "seconds": m["seconds"]})
    for spec in args.variant:
        name, _, rest = spec.partition(":")
        config = load_config(None, list(args.set) + [kv for kv in re.split(r",(?![^\[]*\])", rest) if kv])
        for s in args.subjects:
            t0 = time.perf_counter()
            m = run_fold(args.images, s, args.loss, root / name / f"{s:03d}", config, log=lambda *_: None)
            rows.append({"variant": name, "subject": s, "n_test": m["n_test"], "test_mae": m["test_mae"],
                         "val_mae": m["val_mae"], "best_epoch": m["best_epoch"],
                         "seconds": time.perf_counter() - t0})
            r = rows[-1]
            print(f"{name:>12} subject {s:03d}: test MAE {r['test_mae']:6.2f} ({r['n_test']} images), "
                  f"val MAE {r['val_mae']:5.2f}, best epoch {r['best_epoch']}, {r['seconds']:.0f} s", flush=True)
    print(f"\n{'variant':>12} {'mean test MAE':>14} {'image-weighted':>15} {'seconds':>8}")
    for name in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == name]
        weighted = sum(r["test_mae"] * r["n_test"] for r in rs) / sum(r["n_test"] for r in rs)
        print(f"{name:>12} {sum(r['test_mae'] for r in rs) / len(rs):>14.2f} {weighted:>15.2f} "
              f"{sum(r['seconds'] for r in rs):>8.0f}")
    if args.reference:
        paired(rows, args.reference)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def paired(rows: list[dict], reference: str) -> None:
    """Per-subject test-MAE differences (variant - reference): mean, bootstrap 95% CI, Wilcoxon p."""
    from ageest.study.stats import paired_comparison

    ref = {r["subject"]: r["test_mae"] for r in rows if r["variant"] == reference}
    print(f"\npaired per-subject test MAE difference against {reference} (negative: variant better)")
    for name in dict.fromkeys(r["variant"] for r in rows):
        if name == reference:
            continue
        mine = {r["subject"]: r["test_mae"] for r in rows if r["variant"] == name}
        subjects = sorted(set(mine) & set(ref))
        c = paired_comparison([mine[s] for s in subjects], [ref[s] for s in subjects], n_boot=10000, seed=0)
        print(f"{name:>12} - {reference}: {c['mean_diff']:+.2f} years over {len(subjects)} subjects "
              f"(95% CI {c['ci_low']:+.2f}..{c['ci_high']:+.2f}, Wilcoxon p {c['wilcoxon_p']:.2g}, "
              f"{c['improved']} better, {c['worse']} worse)")


if __name__ == "__main__":
    main()
