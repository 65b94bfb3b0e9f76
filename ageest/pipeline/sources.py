"""Batches for the engine: the fast path (cached uint8 array, batch augmentation on the device)
and the plain path (the reference recipe's way: PIL per sample in DataLoader workers), same geometry."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ageest.pipeline.augment import augment_batch, center_crop, normalize
from ageest.config import Config
from ageest.data.records import Record
from ageest.nn.backbones import backbone


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """The random stream of one training batch: resuming mid-epoch redraws exactly the same."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1)[0]))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch, 2**31]).generate_state(1)[0]))
    return torch.randperm(n, generator=g)


def num_batches(n: int, batch_size: int) -> int:
    # A trailing batch of one image is dropped: BatchNorm cannot train on a single sample.
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 else 0)


class TensorSource:
    """Images already decoded at the resize size, held as one uint8 tensor on the device."""

    def __init__(self, images: np.ndarray, ages: Sequence[int], config: Config, device: torch.device,
                 channels_last: bool = False):
        # A memory-mapped slice is read-only; torch wants a writable array (one copy, then the device).
        self.x = torch.from_numpy(np.require(images, np.uint8, ["C", "W"])).to(device)
        self.y = torch.as_tensor(list(ages), dtype=torch.float32, device=device)
        self.config = config
        self.channels_last = channels_last
        self.norm = backbone(config.arch).norm

    def __len__(self) -> int:
        return self.x.shape[0]

    def _fmt(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        c = self.config
        order = epoch_order(len(self), c.seed, epoch).to(self.x.device)
        for b in range(start, num_batches(len(self), c.batch_size)):
            idx = order[b * c.batch_size:(b + 1) * c.batch_size]
            x = augment_batch(self.x[idx], c.image_size, c.rotate, c.shear, c.flip,
                              batch_generator(c.seed, epoch, b), self.norm)
            yield self._fmt(x), self.y[idx]

    def eval_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        bs = self.config.eval_batch_size
        for i in range(0, len(self), bs):
            x = normalize(center_crop(self.x[i:i + bs], self.config.image_size), self.norm)
            yield self._fmt(x), self.y[i:i + bs]


class _PlainDataset(torch.utils.data.Dataset):
    def __init__(self, records: Sequence[Record], config: Config, points_dir: Path | None, train: bool):
        from torchvision import transforms as T

        self.records, self.config, self.points_dir = list(records), config, points_dir
        c = config
        ops = [T.RandomHorizontalFlip()] if (train and c.flip) else []
        if train:
            ops += [T.RandomRotation(c.rotate), T.RandomAffine(0, shear=c.shear),
                    T.RandomCrop(c.image_size)]
        else:
            ops += [T.CenterCrop(c.image_size)]
        self.tf = T.Compose(ops + [T.ToTensor(), T.Normalize(backbone(c.arch).norm.mean, backbone(c.arch).norm.std)])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        from PIL import Image

        from ageest.pipeline.cache import preprocess_image

        r = self.records[i]
        img, _ = preprocess_image(r, self.config, self.points_dir)
        return self.tf(Image.fromarray(img)), torch.tensor(float(r.age))


class PlainSource:
    """The reference recipe's pipeline: every image decoded, warped and cropped by PIL, per sample, per epoch."""

    def __init__(self, records: Sequence[Record], config: Config, device: torch.device,
                 points_dir: Path | None = None, workers: int | None = None):
        self.records, self.config, self.device, self.points_dir = list(records), config, device, points_dir
        self.workers = min(4, os.cpu_count() or 1) if workers is None else workers

    def __len__(self) -> int:
        return len(self.records)

    def _loader(self, train: bool, epoch: int = 0):
        c = self.config
        ds = _PlainDataset(self.records, c, self.points_dir, train)
        g = torch.Generator().manual_seed(c.seed * 1000 + epoch)
        return torch.utils.data.DataLoader(
            ds, batch_size=c.batch_size if train else c.eval_batch_size, shuffle=train,
            drop_last=False, num_workers=self.workers, generator=g,
            persistent_workers=False, pin_memory=self.device.type == "cuda")

    def train_batches(self, epoch: int, start: int = 0):
        limit = num_batches(len(self), self.config.batch_size)
        for b, (x, y) in enumerate(self._loader(True, epoch)):
            if b >= limit:
                break
            if b >= start:
                yield x.to(self.device, non_blocking=True), y.to(self.device)

    def eval_batches(self):
        for x, y in self._loader(False):
            yield x.to(self.device, non_blocking=True), y.to(self.device)

