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
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ageest.errors import AgeestError, ConfigError
from ageest.io import open_lock_file

if TYPE_CHECKING:
    import torch

_held = []  # lock files stay open (and locked) for the life of the process


def lock_dir() -> Path:
    """$AGEEST_LOCK_DIR; else a folder of this user's on this machine: in $XDG_RUNTIME_DIR (made
    by the system for this user alone) where set, else `ageest-gpu-locks-UID` in the temp dir. A
    fixed shared name would belong to whoever made it first, and let others plant files in it."""
    if os.environ.get("AGEEST_LOCK_DIR"):
        return Path(os.environ["AGEEST_LOCK_DIR"])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "ageest-gpu-locks"
    return Path(tempfile.gettempdir()) / f"ageest-gpu-locks-{os.getuid()}"


def own_folder(folder: Path) -> Path:
    """`folder`, made 0700 where missing; refused in one line unless it is a real folder (no
    symbolic link) of this user's that no one else may write to."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(folder)
    except OSError as e:
        raise AgeestError(f"GPU lock folder {folder}: {e.strerror or e}; set AGEEST_LOCK_DIR to a folder of your own") from None
    why = ("is not a folder (a symbolic link?)" if not stat.S_ISDIR(st.st_mode)
           else f"belongs to another user (uid {st.st_uid})" if st.st_uid != os.getuid()
           else "may be written by other users" if st.st_mode & 0o022 else None)
    if why:
        raise AgeestError(f"GPU lock folder {folder} {why}: refused; set AGEEST_LOCK_DIR to a folder of your own")
    return folder




def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def claim_gpu(n_gpus: int, slots: int = 1, folder: Path | None = None, poll_s: float = 1.0,
              log: Callable[[str], None] = _stderr) -> int:
    """Index of a GPU with a free slot, locked for this process until it exits.

    Slots are lock files `folder/HOST-CUDA_VISIBLE_DEVICES-gpuG-slotS.lock` (S < `slots`), filled
    slot 0 of every GPU first. When every slot is held, it waits: one line through `log`, then a
    retry every `poll_s` seconds until a holder exits (its lock goes with it).
    """
    folder = own_folder(folder or lock_dir())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    host = socket.gethostname()
    t0 = None
    while True:
        for slot in range(slots):
            for gpu in range(n_gpus):
                f = open_lock_file(folder / f"{host}-{visible}-gpu{gpu}-slot{slot}.lock", "GPU lock file")
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
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError(f"config key 'device': {spec} asked for but Apple's MPS is not available here")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config key 'device': {spec} asked for but CUDA is not available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"config key 'device': {spec} but only {torch.cuda.device_count()} GPU(s)")
    return dev
