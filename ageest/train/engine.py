"""The training engine: one epoch of training, one pass of evaluation, each returning a metric dict."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn

from ageest.nn.losses import LossFn, Predict, expected_age

TERMS = ("loss", "ce", "mean", "var")


@dataclass
class EpochState:
    """Running sums of one epoch, kept on the device (no sync per step) and resumable mid-epoch."""

    next_batch: int = 0
    images: int = 0
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"next_batch": self.next_batch, "images": self.images, "seconds": self.seconds,
                "sums": {k: v.detach().cpu() for k, v in self.sums.items()}}

    @classmethod
    def from_dict(cls, d: dict, device: torch.device) -> "EpochState":
        return cls(d["next_batch"], d["images"], {k: v.to(device) for k, v in d["sums"].items()},
                   d["seconds"])


def autocast_for(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of autocast contexts: bf16 where the device runs it fast, else plain fp32."""
    if precision == "fp32" or not uses_bf16(device, precision):
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def uses_bf16(device: torch.device, precision: str) -> bool:
    """Whether training runs under bf16 autocast: always for 'bf16', never for 'fp32', and for
    'auto' only where the device has native bf16 arithmetic (emulated bf16 is slower than fp32)."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device.type == "cuda":
        return _cuda_native_bf16(device)
    if device.type == "cpu":
        # bf16 is only faster than fp32 with native bf16 instructions (AVX-512 BF16 / AMX). torch's
        # mkldnn bf16 check is not that: it also says yes on plain AVX-512, where bf16 is emulated.
        try:
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def precision_name(device: torch.device, precision: str) -> str:
    """The precision a fold actually trains in, as recorded in metrics.json: 'bf16' or 'fp32'."""
    return "bf16" if uses_bf16(device, precision) else "fp32"


def _cuda_native_bf16(device: torch.device) -> bool:
    # is_bf16_supported() alone also says yes where bf16 is only emulated (V100, T4: compute
    # capability 7.x); native bf16 starts with Ampere (8.0).
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 has no including_emulation argument
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_capability(index)[0] >= 8


def train_one_epoch(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    loss_fn: LossFn, optimizer: torch.optim.Optimizer, ages: torch.Tensor, *,
                    loss_kwargs: dict | None = None, autocast=contextlib.nullcontext,
                    state: EpochState | None = None,
                    should_stop: Callable[[], bool] = lambda: False,
                    keep_eval: Iterable[nn.Module] = ()) -> tuple[dict, EpochState, bool]:
    """Train over `batches` (the rest of this epoch, from `state.next_batch`).

    The model is put in train mode, except the modules in `keep_eval`, which stay in eval mode
    (frozen BatchNorm layers: their running statistics do not move).
    Returns (metrics, state, finished). `finished` is False when `should_stop()` asked to stop at a
    batch boundary; `state` then holds what is needed to continue this epoch exactly.
    Metrics: mean of each loss term over images, images, seconds, images_per_second.
    """
    state = state or EpochState()
    model.train()
    for m in keep_eval:
        m.eval()
    t0 = time.perf_counter()
    finished = True
    for x, y in batches:
        with autocast():
            logits = model(x)
        terms = loss_fn(logits, y, ages, **(loss_kwargs or {}))
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        n = x.shape[0]
        for k, v in terms.items():
            state.sums[k] = state.sums.get(k, 0) + v.detach().float() * n
        state.images += n
        state.next_batch += 1
        if should_stop():
            finished = False
            break
    state.seconds += time.perf_counter() - t0
    # TERMS always (NaN where this loss has no such term), then whatever else the loss returned
    # (kl, l1, residue, bce, ...), so every loss's own terms reach history.tsv.
    names = TERMS + tuple(k for k in state.sums if k not in TERMS)
    metrics = {f"train_{k}": float(state.sums[k]) / max(state.images, 1) if k in state.sums else float("nan")
               for k in names}
    metrics.update(images=state.images, seconds=state.seconds,
                   images_per_second=state.images / state.seconds if state.seconds > 0 else 0.0)
    return metrics, state, finished


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], loss_fn: LossFn,
             ages: torch.Tensor, *, loss_kwargs: dict | None = None,
             autocast=contextlib.nullcontext, predict: Predict = expected_age) -> dict:
    """Loss, MAE and per-image predictions (age and its spread, in years, as the loss's `predict`
    makes them from the outputs: the expected age for all but CORAL)."""
    model.eval()
    means, stds, targets = [], [], []
    loss_sum, n = torch.zeros((), device=ages.device), 0
    for x, y in batches:
        with autocast():
            logits = model(x)
        loss_sum += loss_fn(logits, y, ages, **(loss_kwargs or {}))["loss"].float() * x.shape[0]
        mean, std = predict(logits, ages)
        means.append(mean)
        stds.append(std)
        targets.append(y.float())
        n += x.shape[0]
    mean = torch.cat(means).cpu().numpy().astype(np.float64)
    std = torch.cat(stds).cpu().numpy().astype(np.float64)
    target = torch.cat(targets).cpu().numpy().astype(np.float64)
    return {"loss": float(loss_sum) / max(n, 1), "mae": float(np.abs(mean - target).mean()),
            "predicted_age": mean, "predicted_std": std, "age": target, "images": n}

