"""Choosing the device, and giving each of several concurrent fold jobs its own GPU.

Snakemake's `--resources gpu=N` only counts GPUs; it does not say which one a job may use. With
`device: auto`, a job takes the first free slot among lock files, one per (GPU, slot), and holds the
lock until it exits, so N concurrent jobs land on N different GPUs (or `folds_per_gpu` per GPU).
A job that finds every slot held waits until one is released.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ageest.errors import ConfigError

if TYPE_CHECKING:
    import torch

_held = []  # lock files stay open (and locked) for the life of the process


def lock_dir() -> Path:
    return Path(os.environ.get("AGEEST_LOCK_DIR") or Path(tempfile.gettempdir()) / "ageest-gpu-locks")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def claim_gpu(n_gpus: int, slots: int = 1, folder: Path | None = None, poll_s: float = 1.0,
              log: Callable[[str], None] = _stderr) -> int:
    """Index of a GPU with a free slot, locked for this process until it exits.

    Slots are lock files `folder/HOST-CUDA_VISIBLE_DEVICES-gpuG-slotS.lock` (S < `slots`), filled
    slot 0 of every GPU first. When every slot is held, it waits: one line through `log`, then a
    retry every `poll_s` seconds until a holder exits (its lock goes with it).
    """
    folder = folder or lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    host = socket.gethostname()
    t0 = None
    while True:
        for slot in range(slots):
            for gpu in range(n_gpus):
                f = open(folder / f"{host}-{visible}-gpu{gpu}-slot{slot}.lock", "w")
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    f.close()
                    continue
                _held.append(f)
                if t0 is not None:
                    log(f"GPU {gpu} slot {slot} free after {time.monotonic() - t0:.0f} s; using it")
                return gpu
        if t0 is None:
            t0 = time.monotonic()
            log(f"all {n_gpus} GPU(s) x {slots} slot(s) are taken by other fold jobs (locks in {folder}); "
                "waiting for one to be released")
        time.sleep(poll_s)


def resolve_device(spec: str, folds_per_gpu: int = 1) -> torch.device:
    """'auto' -> a free CUDA GPU, else Apple MPS, else CPU; or the device named."""
    import torch  # here, not at the top: claiming a GPU slot needs no torch

    if spec == "auto":
        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            return torch.device("cuda", claim_gpu(n, folds_per_gpu) if n > 1 or folds_per_gpu > 1 else 0)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config key 'device': {spec} asked for but CUDA is not available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"config key 'device': {spec} but only {torch.cuda.device_count()} GPU(s)")
    return dev
