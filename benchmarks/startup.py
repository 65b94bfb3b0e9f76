"""A fold job's fixed cost: from `ageest train`'s process start to its first training step.

Runs the demo's fold job (config/demo.yaml's training keys, one torch thread) on a small synthetic
data set, alternately with and without the fork server (AGEEST_FORK_SERVER), and prints each
run's start-up (metrics.json's startup_seconds) and whole wall time, then the medians.

    python benchmarks/startup.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def ageest(*args: str, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "ageest", *args], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if r.returncode:
        raise SystemExit(f"ageest {args[0]} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs of each arm, interleaved")
    ap.add_argument("--subjects", type=int, default=20, help="subjects in the synthetic data set")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ageest-startup-"))
    training = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["training"]
    (tmp / "training.yaml").write_text(yaml.safe_dump({**training, "threads": 1}))
    common = ["--config", str(tmp / "training.yaml")]
    ageest("synth", str(tmp / "data"), "--subjects", str(args.subjects))
    images = str(tmp / "data" / "images")
    ageest("prepare", "--images", images, "--out", str(tmp / "cache.npy"), *common)
    ageest("split", "--images", images, "--leave-subject", "1", "--out", str(tmp / "split.tsv"), *common)
    # The first fork-server run starts the server (imports included): a warm-up, not counted.
    arms = {"own process": "0", "fork server": "1"}
    results: dict[str, list[tuple[float, float]]] = {a: [] for a in arms}
    for i in range(-1, args.runs):
        for arm, flag in arms.items():
            out = tmp / f"fold-{arm.replace(' ', '-')}-{i}"
            wall = ageest("train", "--images", images, "--leave-subject", "1", "--loss", "mean_variance",
                          "--out", str(out), "--cache", str(tmp / "cache.npy"), "--split",
                          str(tmp / "split.tsv"), *common, env={"AGEEST_FORK_SERVER": flag})
            startup = json.loads((out / "metrics.json").read_text())["startup_seconds"]
            if i >= 0:
                results[arm].append((startup, wall))
                print(f"run {i + 1} {arm:>11}: start-up {startup:5.2f} s, job {wall:5.2f} s, load "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
    for arm, rs in results.items():
        print(f"median {arm:>11}: start-up {statistics.median(r[0] for r in rs):.2f} s, "
              f"job {statistics.median(r[1] for r in rs):.2f} s")


if __name__ == "__main__":
    main()
