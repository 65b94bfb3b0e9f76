"""Training-loop throughput: the seed's pipeline against ageest's fast path, side by side.

Seed style: every image decoded, flipped, rotated, sheared, resized and cropped by PIL per sample in
DataLoader workers, fp32, contiguous memory. Fast path: images decoded once into the uint8 cache,
one affine warp per batch on the device, bf16 autocast where the device has it, channels-last.
Same model (ResNet34 + head), batch size, optimizer step and loss; images/s over whole steps.

    python benchmarks/train_throughput.py --images ../shared/data/FGNET/images --sizes 224 112
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time

import torch

from ageest.cache import default_points_dir, open_cache
from ageest.config import Config
from ageest.data import PlainSource, TensorSource
from ageest.devices import resolve_device
from ageest.engine import autocast_for, train_one_epoch
from ageest.fgnet import scan_images
from ageest.losses import loss_kwargs, mean_variance_loss
from ageest.model import build_model


def measure(source, config: Config, device, autocast, channels_last: bool, steps: int) -> float:
    model = build_model(config.arch, config.num_classes, "none").to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    ages = config.age_grid(device)
    kw = loss_kwargs("mean_variance", config)
    # One warm-up step (kernel selection, worker start-up), then `steps` timed steps, pipeline included.
    train_one_epoch(model, itertools.islice(source.train_batches(0), 1), mean_variance_loss, opt, ages,
                    loss_kwargs=kw, autocast=autocast)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    m, _, _ = train_one_epoch(model, itertools.islice(source.train_batches(1), steps), mean_variance_loss,
                              opt, ages, loss_kwargs=kw, autocast=autocast)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return m["images"] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 112])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=None, help="seed-style DataLoader workers (default: cores, at most 4)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    records = scan_images(args.images)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"{'size':>5} {'seed-style img/s':>17} {'fast img/s':>11} {'ratio':>6}  (batch {args.batch_size}, "
          f"{args.steps} steps each)")
    for size in args.sizes:
        c = Config(image_size=size, batch_size=args.batch_size, pretrained="none")
        n = min(len(records), args.batch_size * (args.steps + 1))
        recs = records[:n]
        seed = PlainSource(recs, c, device, default_points_dir(args.images) if c.align != "none" else None,
                           workers=args.workers)
        base = measure(seed, c, device, autocast_for(device, "fp32"), False, args.steps)
        cache = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"bench-cache-{size}.npy")
        reused = os.path.exists(cache + ".json")
        t0 = time.perf_counter()
        arr, _ = open_cache(cache, records, c, None)
        built = "reused" if reused else f"built in {time.perf_counter() - t0:.1f} s"
        fast_src = TensorSource(arr[:n], [r.age for r in recs], c, device, channels_last=True)
        fast = measure(fast_src, c, device, autocast_for(device, c.precision), True, args.steps)
        print(f"{size:>5} {base:>17.1f} {fast:>11.1f} {fast / base:>5.2f}x  (cache of {len(records)} images "
              f"{built}, once per study)", flush=True)


if __name__ == "__main__":
    main()
