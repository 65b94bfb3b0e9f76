"""Training-loop throughput: the reference recipe's pipeline against ageest's fast path, side by side.

Reference style: every image decoded, flipped, rotated, sheared, resized and cropped by PIL per sample in
DataLoader workers, fp32, contiguous memory. Fast path: images decoded once into the uint8 cache,
one affine warp per batch on the device, bf16 autocast where the device has it, channels-last,
fused Adam (as `ageest train`).
Same model (ResNet34 + head), batch size, optimizer step and loss; images/s over whole steps.
A measurement is one epoch of a fold (--steps 14: ~900 training images of FG-NET at batch 64), so
the reference pipeline's DataLoader start-up and the batches its workers prefetch count once per epoch, as in
training; a window of a few steps charges them several times over and flatters the fast path.
The ratio of the steady steps (all but each epoch's first) is printed beside it.
The two arms take turns (--rounds), so a machine whose load changes during the run slows both
alike; each round gives a ratio, and the median round is printed.
Then the ceiling: torch.profiler times the fast arm's convolutions (forward and backward) over a
few steps, and the script prints the ratio a fast path made of nothing but those convolutions would
reach against the reference style's epoch. No change outside the convolutions can beat that ratio.

    python benchmarks/train_throughput.py --images ../shared/data/FGNET/images --sizes 224 112
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time

import torch
from fastpath import Trainer, cache_path, open_bench_cache
from suite import add_suite_arguments, alternate, median_ratio, quick_images, write_figures

from ageest.pipeline.cache import default_points_dir
from ageest.config import Config
from ageest.pipeline.sources import PlainSource, TensorSource
from ageest.train.devices import resolve_device
from ageest.data.fgnet import scan_images


class Arm:
    """One pipeline with its own model and optimizer, measured in turns."""

    def __init__(self, source, trainer: Trainer, device):
        self.source, self.trainer, self.device = source, trainer, device
        self.epoch = 0
        self.measure(1)  # warm-up (kernel selection, allocations): not counted

    def measure(self, steps: int) -> tuple[float, float]:
        """images/s over `steps` steps of a new epoch, pipeline (and worker start-up) included; and
        images/s of the steps after the first (the median step; CPU only: timing single steps on a
        GPU would need a synchronisation per step, which training does not do)."""
        cuda = self.device.type == "cuda"
        stamps, sizes = [], []

        def stamped(batches):
            for x, y in batches:
                stamps.append(time.perf_counter())
                sizes.append(x.shape[0])
                yield x, y

        batches = itertools.islice(self.source.train_batches(self.epoch), steps)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        m = self.trainer.train(batches if cuda else stamped(batches))
        if cuda:
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        self.epoch += 1
        # A step runs from its batch's arrival to the next batch's (or the end of the epoch).
        later = [n / (b - a) for n, a, b in zip(sizes[1:], stamps[1:], stamps[2:] + [t1])]
        return m["images"] / (t1 - t0), statistics.median(later) if later else float("nan")

    def conv_seconds_per_image(self, steps: int) -> float:
        """Seconds per image in convolutions (forward and backward) over `steps` steps, by
        torch.profiler (CPU: the profiler's op times are the work itself, not kernel launches)."""
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            self.measure(steps)
        conv_us = sum(e.self_cpu_time_total for e in prof.key_averages() if "convolution" in e.key)
        return conv_us / 1e6 / (steps * self.source.config.batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=None, help="FG-NET-layout images (--quick: a small synthetic set)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 112])
    ap.add_argument("--steps", type=int, default=14, help="timed steps per measurement (an epoch)")
    ap.add_argument("--rounds", type=int, default=3, help="measurements of each arm, taking turns")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=None, help="reference-style DataLoader workers (default: cores, at most 4)")
    add_suite_arguments(ap)
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.steps, args.rounds, args.batch_size = [32], 2, 1, 8
    args.images = args.images or quick_images()
    device = resolve_device(args.device)
    records = scan_images(args.images)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"{'size':>5} {'reference-style img/s':>17} {'fast img/s':>11} {'ratio':>6} {'steady steps':>13}  "
          f"(batch {args.batch_size}, {args.steps} steps each, median of {args.rounds} rounds)")
    rows = []
    for size in args.sizes:
        c = Config(image_size=size, batch_size=args.batch_size, pretrained="none")
        n = min(len(records), args.batch_size * args.steps)  # one whole epoch: no batch prefetched in vain
        recs = records[:n]
        seed = PlainSource(recs, c, device, default_points_dir(args.images) if c.align != "none" else None,
                           workers=args.workers)
        reused = os.path.exists(cache_path(records, c) + ".json")
        t0 = time.perf_counter()
        arr = open_bench_cache(records, c)
        built = "reused" if reused else f"built in {time.perf_counter() - t0:.1f} s"
        fast_src = TensorSource(arr[:n], [r.age for r in recs], c, device, channels_last=True)
        # The reference recipe's Adam is torch's default; ageest's is fused where the device has it (train.py).
        arms = {"seed": Arm(seed, Trainer(c, device, channels_last=False, fused=None, precision="fp32"), device),
                "fast": Arm(fast_src, Trainer(c, device, fused=device.type in ("cuda", "cpu")), device)}
        runs = {k: [] for k in arms}  # (epoch img/s, steady-step img/s) per round
        figures = alternate({k: (lambda k=k, arm=arm: runs[k].append(arm.measure(args.steps)) or runs[k][-1][0])
                             for k, arm in arms.items()}, args.rounds)
        base, fast = (statistics.median(figures[k]) for k in ("seed", "fast"))
        ratio = median_ratio(figures["fast"], figures["seed"])
        steady = median_ratio([r[1] for r in runs["fast"]], [r[1] for r in runs["seed"]])
        print(f"{size:>5} {base:>17.1f} {fast:>11.1f} {ratio:>5.2f}x {steady:>12.2f}x  (cache of {len(records)} "
              f"images {built}, once per study; load {os.getloadavg()[0]:.1f}; rounds "
              + ", ".join(f"{f / b:.2f}x" for b, f in zip(figures["seed"], figures["fast"])) + ")", flush=True)
        row = {"size": size, "seed_img_s": base, "fast_img_s": fast, "ratio": ratio, "steady_ratio": steady}
        if device.type == "cpu":
            conv = arms["fast"].conv_seconds_per_image(min(3, args.steps))
            row["ceiling"] = 1 / (conv * base)
            print(f"{'':>5} ceiling: the fast arm's convolutions alone take {1000 * conv:.1f} ms per image "
                  f"({conv * fast:.0%} of its epoch); a fast path of nothing but them would be "
                  f"{row['ceiling']:.2f}x the reference style", flush=True)
        rows.append(row)
    write_figures(args.out, rows)


if __name__ == "__main__":
    main()
