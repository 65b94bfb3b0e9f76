"""What the speed benchmarks share: the image cache of a size, and one training set-up as
`ageest train` makes it (run as `python benchmarks/NAME.py`, which puts this folder on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ageest.pipeline.cache import open_cache
from ageest.config import Config
from ageest.train.engine import autocast_for, train_one_epoch
from ageest.data.records import Record
from ageest.nn.losses import loss_kwargs, mean_variance_loss
from ageest.nn.model import build_model


def cache_path(size: int) -> str:
    """The benchmarks' cache of the images prepared for `size` px crops, reused between runs: in a
    folder of this user's own (its lock file too), never a fixed name in the shared temp dir."""
    from ageest.train.devices import own_folder

    folder = own_folder(Path(os.environ.get("TMPDIR", "/tmp")) / f"ageest-bench-{os.getuid()}")
    return os.path.join(folder, f"bench-cache-{size}.npy")


def open_bench_cache(records: Sequence[Record], config: Config) -> np.ndarray:
    return open_cache(cache_path(config.image_size), records, config, None)[0]


class Trainer:
    """A model, its optimizer and the training step's arguments, mean-variance loss, as `ageest
    train` sets them up on `device`: channels-last, fused Adam and the config's precision unless
    told otherwise (the reference style: contiguous, torch's default Adam, fp32)."""

    def __init__(self, config: Config, device: torch.device, channels_last: bool = True,
                 fused: bool | None = True, precision: str | None = None):
        self.model = build_model(config.arch, config.num_classes, "none").to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr, fused=fused)
        self.ages = config.age_grid(device)
        self.loss_kwargs = loss_kwargs("mean_variance", config)
        self.autocast = autocast_for(device, precision or config.precision)

    def train(self, batches) -> dict:
        """One pass of train_one_epoch over `batches`: its metrics."""
        m, _, _ = train_one_epoch(self.model, batches, mean_variance_loss, self.opt, self.ages,
                                  loss_kwargs=self.loss_kwargs, autocast=self.autocast)
        return m

