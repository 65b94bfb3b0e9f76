"""Making one training batch on the device, before and after issue 12's change, side by side.

Before: the sampling grid by `F.affine_grid` (a batched matrix product with an inner dimension of
3). After: `augment_batch` as ageest runs it, the grid as two broadcast sums (augment.affine_grid).
Everything else (the draws, `grid_sample`, normalisation) is the same code. The two alternate
(--rounds); the median milliseconds per batch of 64 are printed.

    python benchmarks/batch_prep.py --sizes 112 224
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from suite import add_suite_arguments, alternate, median_ratio, write_figures

from ageest.pipeline.augment import IMAGENET_NORM, _normalize_, affine_params, augment_batch


def before(x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    theta = affine_params(x.shape[0], x.shape[1], size, 10, 16, True, g)
    grid = F.affine_grid(theta, [x.shape[0], 3, size, size], align_corners=False)
    out = F.grid_sample(x.permute(0, 3, 1, 2).float(), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return _normalize_(out, 255, IMAGENET_NORM)


def after(x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    return augment_batch(x, size, 10, 16, True, g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=9)
    add_suite_arguments(ap)
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.batch_size, args.rounds = [32], 8, 1
    print(f"{os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"ms per batch of {args.batch_size}, median of {args.rounds} rounds")
    rows = []
    for size in args.sizes:
        resize = round(size * 256 / 224)
        x = torch.randint(0, 256, (args.batch_size, resize, resize, 3), dtype=torch.uint8)
        same = (before(x, size, torch.Generator().manual_seed(0)) - after(x, size, torch.Generator().manual_seed(0)))
        def timed(f):
            def ms() -> float:
                t0 = time.perf_counter()
                f(x, size, torch.Generator().manual_seed(0))
                return 1000 * (time.perf_counter() - t0)
            return ms

        # The first round allocates: not counted.
        times = alternate({"before": timed(before), "after": timed(after)}, args.rounds, warmup=True)
        b, a = (statistics.median(times[k]) for k in ("before", "after"))
        ratio = median_ratio(times["before"], times["after"])
        print(f"{size:>5} px: before {b:6.1f} ms, after {a:6.1f} ms ({ratio:.1f}x; largest difference in "
              f"the batch {same.abs().max().item():.3g}, load {os.getloadavg()[0]:.1f})", flush=True)
        rows.append({"size": size, "before_ms": b, "after_ms": a, "ratio": ratio,
                     "max_difference": same.abs().max().item(), "load": os.getloadavg()[0]})
    write_figures(args.out, rows)


if __name__ == "__main__":
    main()
