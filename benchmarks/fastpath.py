"""What the speed benchmarks share: their image cache, and one training set-up as
`ageest train` makes it (run as `python benchmarks/NAME.py`, which puts this folder on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ageest.pipeline.cache import default_cache_path, open_cache
from ageest.config import Config
from ageest.train.engine import autocast_for, train_one_epoch
from ageest.data.records import Record
from ageest.nn.losses import loss_spec
from ageest.train.fold import build_training


def cache_path(records: Sequence[Record], config: Config) -> str:
    """The benchmarks' cache of `records` prepared as `config` says, reused between runs: in a folder
    of this user's own (its lock file too), never a fixed name in the shared temp dir, and named as
    `ageest train` names its caches (cache version, the data's fingerprint, the geometry), so
    other images, settings or an older cache format get a cache of their own."""
    from ageest.train.devices import own_folder

    folder = own_folder(Path(os.environ.get("TMPDIR", "/tmp")) / f"ageest-bench-{os.getuid()}")
    return os.path.join(folder, default_cache_path(records, config).name)


def open_bench_cache(records: Sequence[Record], config: Config) -> np.ndarray:
    return open_cache(cache_path(records, config), records, config, None)[0]


class Trainer:
    """A fold's network, optimiser, schedule and loss as `ageest train` builds them
    (`ageest.train.fold.build_training`: the loss's head, weight decay, the milestones), without
    pretrained weights, on `device`: channels-last, fused Adam and the config's precision unless
    told otherwise (the reference style: contiguous, torch's default Adam, fp32)."""

    def __init__(self, config: Config, device: torch.device, channels_last: bool = True,
                 fused: bool | None = True, precision: str | None = None, loss: str = "mean_variance"):
        self.spec = loss_spec(loss)
        self.model, self.opt, self.scheduler = build_training(
            config.replace(pretrained="none"), self.spec, device, channels_last,
            fused=False if fused is None else fused)
        self.ages = config.age_grid(device)
        self.loss_kwargs = self.spec.kwargs(config)
        self.autocast = autocast_for(device, precision or config.precision)

    def train(self, batches) -> dict:
        """One epoch of train_one_epoch over `batches`, then the schedule's step: its metrics."""
        m, _, _ = train_one_epoch(self.model, batches, self.spec.fn, self.opt, self.ages,
                                  loss_kwargs=self.loss_kwargs, autocast=self.autocast)
        self.scheduler.step()
        return m
