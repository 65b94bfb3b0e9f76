"""Where a fold's training time goes on this device: augmentation, forward, backward, optimizer,
evaluation, per image, for the fast path at each size, plus torch.profiler's top operators.

    python benchmarks/profile_fold.py --images ../shared/data/FGNET/images --sizes 64 112 --arch resnet34

Each phase is timed on its own (the CPU runs synchronously, so wall time per phase is its cost);
`--ops` adds torch.profiler's table of the operators that take the most self time.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from fastpath import Trainer, open_bench_cache
from suite import add_suite_arguments, quick_images, write_figures

from ageest.config import Config
from ageest.pipeline.sources import TensorSource
from ageest.data.fgnet import scan_images
from ageest.nn.losses import mean_variance_loss


def phases(src: TensorSource, c: Config, steps: int) -> dict[str, float]:
    """Seconds per training image of each phase, over `steps` steps after one warm-up step; and
    seconds per image of one evaluation pass over the source."""
    tr = Trainer(c, torch.device("cpu"))
    model, opt, ages, kw, autocast = tr.model, tr.opt, tr.ages, tr.loss_kwargs, tr.autocast
    t = dict.fromkeys(("augment", "forward", "backward", "optimizer"), 0.0)
    n = 0
    batches = src.train_batches(0)
    for step in range(steps + 1):
        t0 = time.perf_counter()
        x, y = next(batches)
        t1 = time.perf_counter()
        with autocast():
            logits = model(x)
        terms = mean_variance_loss(logits, y, ages, **kw)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if step:  # the first step picks kernels and allocates: not counted
            n += x.shape[0]
            for k, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                t[k] += dt
    per_image = {k: v / n for k, v in t.items()}
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        m = 0
        for x, _ in src.eval_batches():
            with autocast():
                model(x)
            m += x.shape[0]
    per_image["evaluation"] = (time.perf_counter() - t0) / m
    return per_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=None, help="FG-NET-layout images (--quick: a small synthetic set)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 112])
    ap.add_argument("--arch", default="resnet34")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ops", action="store_true", help="also torch.profiler's top operators")
    add_suite_arguments(ap)
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.arch, args.steps, args.batch_size = [32], "resnet18", 1, 8
    args.images = args.images or quick_images()
    rows = []
    if args.threads:
        torch.set_num_threads(args.threads)
    records = scan_images(args.images)
    print(f"{args.arch}, batch {args.batch_size}, {torch.get_num_threads()} threads, load "
          f"{os.getloadavg()[0]:.1f}; ms per training image (evaluation: per evaluated image)")
    print(f"{'size':>5} {'augment':>8} {'forward':>8} {'backward':>9} {'optimizer':>10} {'evaluation':>11}")
    for size in args.sizes:
        c = Config(arch=args.arch, image_size=size, batch_size=args.batch_size, pretrained="none")
        arr = open_bench_cache(records, c)
        n = args.batch_size * (args.steps + 1)
        src = TensorSource(arr[:n], [r.age for r in records[:n]], c, torch.device("cpu"), channels_last=True)
        p = phases(src, c, args.steps)
        print(f"{size:>5} " + " ".join(f"{1000 * p[k]:>{w}.2f}" for k, w in
                                       (("augment", 8), ("forward", 8), ("backward", 9), ("optimizer", 10),
                                        ("evaluation", 11))), flush=True)
        rows.append({"size": size, **{f"{k}_ms_per_image": 1000 * v for k, v in p.items()}})
        if args.ops:
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                phases(src, c, 2)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    write_figures(args.out, rows)


if __name__ == "__main__":
    main()
