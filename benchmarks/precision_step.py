"""Training steps per second of one network on the CPU, fp32 against bf16 autocast and channels-last
against not, side by side in one run (the four measured in turn, each after warm-up steps).

    python benchmarks/precision_step.py --arch face_age --pretrained faces --size 64 --threads 1

`--quick`: untrained weights, 32 px, batch 8, 1 warm-up and 2 timed steps an arm.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite import add_suite_arguments, write_figures  # noqa: E402

from ageest.nn.model import build_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="face_age")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--classes", type=int, default=81)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=15)
    add_suite_arguments(ap)
    args = ap.parse_args()
    warmup = 3
    if args.quick:
        args.pretrained, args.steps, args.batch, args.size, warmup = "none", 2, 8, 32, 1
    torch.set_num_threads(args.threads)
    model = build_model(args.arch, args.classes, args.pretrained)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, fused=True)
    y = torch.randint(0, args.classes, (args.batch,))
    rates = {}
    for channels_last in (False, True):
        m = model.to(memory_format=torch.channels_last) if channels_last else model
        x = torch.randn(args.batch, 3, args.size, args.size)
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        for precision in ("fp32", "bf16"):
            def step():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    out = m(x)
                loss = torch.nn.functional.cross_entropy(out.float(), y)
                opt.zero_grad()
                loss.backward()
                opt.step()

            for _ in range(warmup):
                step()
            t = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates[(channels_last, precision)] = args.batch * args.steps / (time.perf_counter() - t)
    base = rates[(False, "fp32")]
    print(f"{args.arch} at {args.size} px, batch {args.batch}, {args.threads} thread(s): training images/s")
    figures = []
    for (cl, precision), r in rates.items():
        print(f"  {'channels-last' if cl else 'contiguous   '} {precision}: {r:7.1f}  ({r / base:.2f}x contiguous fp32)")
        figures.append({"arch": args.arch, "size": args.size, "threads": args.threads, "channels_last": cl,
                        "precision": precision, "images_per_second": r, "ratio_to_contiguous_fp32": r / base})
    write_figures(args.out, figures)


if __name__ == "__main__":
    main()
