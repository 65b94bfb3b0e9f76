"""Test MAE of a few folds under several variants of the recipe, side by side.

Used for: the fast path against the plain per-sample pipeline (same MAE within seed noise?), and
aligned against unaligned faces. Each variant is a set of config overrides on top of --set.

    python benchmarks/compare_folds.py --images FGNET/images --subjects 1 2 3 \
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
from ageest.train import run_fold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--subjects", type=int, nargs="+", required=True)
    ap.add_argument("--loss", default="mean_variance")
    ap.add_argument("--set", nargs="*", default=[], help="overrides for every variant")
    ap.add_argument("--variant", action="append", required=True, help="NAME:key=value,key=value (lists in brackets, e.g. lr_milestones=[10,15])")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ageest-compare-"))
    rows = []
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
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
