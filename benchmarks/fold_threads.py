"""Folds side by side on a CPU: one fold with every core's thread against one fold per core with
one thread each (what config/cpu.yaml does: `threads: 1` and `--cores N` train N folds at once).

Each arm trains ageest's fast path (ResNet34 + head, batch 64 unless told, as `ageest train`) in worker
processes started once; the arms take turns (--rounds) and each measurement is the images all of
an arm's folds trained, over the wall time from the first's start to the last's end.

    python benchmarks/fold_threads.py --images ../shared/data/FGNET/images --sizes 112 224
    python benchmarks/fold_threads.py --images ../shared/data/FGNET/images --sizes 32 --arch resnet18 --batch-size 32
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # fastpath.py and suite.py, also in workers
from suite import add_suite_arguments, alternate, median_ratio, quick_images, write_figures  # noqa: E402


def _fold(conn, images: str, size: int, threads: int, arch: str, batch: int) -> None:
    """A worker: one fold's model and data; on each request, `steps` training steps."""
    import torch

    torch.set_num_threads(threads)
    from fastpath import Trainer, open_bench_cache

    from ageest.config import Config
    from ageest.pipeline.sources import TensorSource
    from ageest.data.fgnet import scan_images

    cpu = torch.device("cpu")
    records = scan_images(images)
    c = Config(arch=arch, image_size=size, batch_size=batch, pretrained="none")
    src = TensorSource(open_bench_cache(records, c), [r.age for r in records], c, cpu, channels_last=True)
    trainer, epoch = Trainer(c, cpu), 0

    def train(steps: int) -> int:
        nonlocal epoch
        m = trainer.train(itertools.islice(src.train_batches(epoch), steps))
        epoch += 1
        return m["images"]

    train(1)  # kernel selection and allocations: not counted
    conn.send("ready")
    while (steps := conn.recv()) is not None:
        t0 = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
        n = train(steps)
        conn.send((n, t0, time.perf_counter()))


class Arm:
    def __init__(self, folds: int, threads: int, images: str, size: int, arch: str, batch: int):
        # Workers forked from a server that imported torch once (not from this process: no torch
        # state of an earlier arm's parent leaks into them); each sets its own thread count.
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "fastpath"])
        self.conns, self.procs = [], []
        for _ in range(folds):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_fold, args=(child, images, size, threads, arch, batch), daemon=True)
            p.start()
            self.conns.append(parent)
            self.procs.append(p)
        for c in self.conns:
            assert c.recv() == "ready"
        self.name = f"{folds} fold{'s' if folds > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"

    def measure(self, steps: int) -> float:
        for c in self.conns:
            c.send(steps)
        results = [c.recv() for c in self.conns]
        return sum(n for n, _, _ in results) / (max(t1 for _, _, t1 in results) - min(t0 for _, t0, _ in results))

    def close(self) -> None:
        for c in self.conns:
            c.send(None)
        for p in self.procs:
            p.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=None, help="FG-NET-layout images (--quick: a small synthetic set)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 112, 224])
    ap.add_argument("--arch", default="resnet34")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6, help="training steps per fold and measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    add_suite_arguments(ap)
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.arch, args.batch_size, args.steps, args.rounds = [32], "resnet18", 8, 1, 1
    args.images = args.images or quick_images()
    print(f"{args.arch}, batch {args.batch_size}, {args.cores} cores, fast path (bf16 where native); images/s of all folds together")
    print(f"{'size':>5} {'1 fold x ' + str(args.cores) + ' threads':>22} {str(args.cores) + ' folds x 1 thread':>20} {'ratio':>6}")
    rows = []
    for size in args.sizes:
        arms = {"one": Arm(1, args.cores, args.images, size, args.arch, args.batch_size),
                "many": Arm(args.cores, 1, args.images, size, args.arch, args.batch_size)}
        figures = alternate({k: (lambda arm=arm: arm.measure(args.steps)) for k, arm in arms.items()}, args.rounds)
        for arm in arms.values():
            arm.close()
        one, many = (statistics.median(figures[k]) for k in ("one", "many"))
        ratio = median_ratio(figures["many"], figures["one"])
        print(f"{size:>5} {one:>22.1f} {many:>20.1f} {ratio:>5.2f}x  (load {os.getloadavg()[0]:.1f}; rounds "
              + ", ".join(f"{m / o:.2f}x" for o, m in zip(figures["one"], figures["many"])) + ")", flush=True)
        rows.append({"size": size, "one_fold_img_s": one, "folds_img_s": many, "ratio": ratio, "cores": args.cores})
    write_figures(args.out, rows)


if __name__ == "__main__":
    main()
