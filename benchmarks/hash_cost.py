"""What content fingerprints cost: the data fingerprint of a folder by names and sizes (before)
against names and SHA-256 of the bytes (now), cold (no remembered digests: every byte read) and
warm (a stat per file), side by side in one run, extrapolated to a data set of --extrapolate images.

    python benchmarks/hash_cost.py --images /path/to/FGNET/images --extrapolate 55000

`--quick`: the synthetic faces, one round.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite import add_suite_arguments, quick_images, write_figures  # noqa: E402

from ageest.data import hashes  # noqa: E402
from ageest.data.reader import read_records
from ageest.data.fingerprint import data_fingerprint


def names_and_sizes(records) -> str:  # the fingerprint before content counted
    h = hashlib.sha256()
    for r in records:
        h.update(f"{r.name}\t{r.path.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=None, help="the data set's images (a folder or a manifest)")
    ap.add_argument("--extrapolate", type=int, default=55000)
    ap.add_argument("--rounds", type=int, default=3)
    add_suite_arguments(ap)
    args = ap.parse_args()
    if args.quick:
        args.images, args.rounds = args.images or quick_images(), 1
    if not args.images:
        ap.error("--images is needed (or --quick)")
    records = read_records(args.images)
    size_mb = sum(r.path.stat().st_size for r in records) / 1e6
    rows = []
    for _ in range(args.rounds):  # the three arms in turn each round: a drifting load slows all alike
        with tempfile.TemporaryDirectory() as store:
            os.environ["AGEEST_CACHE_DIR"] = store
            before = timed(names_and_sizes, records)
            hashes._LOADED.clear()  # each arm as a new fold job starts: nothing read yet
            cold = timed(data_fingerprint, records)  # every byte read (the page cache may hold them)
            hashes._LOADED.clear()
            warm = timed(data_fingerprint, records)  # the digests remembered on disk: a stat per file
            rows.append((before, cold, warm))
    before, cold, warm = (min(r[i] for r in rows) for i in range(3))
    n, k = len(records), args.extrapolate / len(records)
    print(f"{n} images, {size_mb:.1f} MB; best of {args.rounds} rounds")
    figures = []
    for name, t in (("names and sizes (before)", before), ("content, cold (now)", cold), ("content, warm (now)", warm)):
        print(f"{name:26s} {t * 1e3:8.1f} ms   x{k:.0f} -> {t * k:6.1f} s   ({t / before:.1f}x before)")
        figures.append({"arm": name, "images": n, "megabytes": round(size_mb, 1), "seconds": t,
                        "ratio_to_before": t / before, f"seconds_for_{args.extrapolate}": t * k})
    write_figures(args.out, figures)


if __name__ == "__main__":
    main()
