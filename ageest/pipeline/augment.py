"""The reference recipe's augmentation done on whole batches on the device: one affine warp per image.

Flip, rotation, shear and the random crop are all affine, so they compose into one 2x3 matrix per
image and a single `grid_sample` call replaces five PIL operations per sample on the CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ageest.nn.backbones import IMAGENET_NORM, Norm

IMAGENET_MEAN, IMAGENET_STD = IMAGENET_NORM.mean, IMAGENET_NORM.std


def _normalize_(x: torch.Tensor, value_range: float, norm: Norm) -> torch.Tensor:
    """In place: float (N, 3, H, W) with values in 0..value_range -> normalised as the network
    wants (its registry entry's `norm`). The one place the normalisation is done; torchvision's
    Normalize(norm.mean, norm.std) is the plain pipeline's equal."""
    mean = torch.tensor(norm.mean, device=x.device).view(1, 3, 1, 1) * value_range
    std = torch.tensor(norm.std, device=x.device).view(1, 3, 1, 1) * value_range
    return x.sub_(mean).div_(std)


def normalize(x_uint8_nhwc: torch.Tensor, norm: Norm = IMAGENET_NORM) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W), normalised (ImageNet's by default)."""
    return _normalize_(x_uint8_nhwc.permute(0, 3, 1, 2).float().div_(255), 1, norm)


def center_crop(x_uint8_nhwc: torch.Tensor, size: int) -> torch.Tensor:
    """The evaluation view: the central size x size window, placed as the reference recipe's (torchvision's)
    CenterCrop places it: offset round((H - size) / 2), with Python's half-to-even rounding."""
    h, w = x_uint8_nhwc.shape[1:3]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x_uint8_nhwc[:, top:top + size, left:left + size]


def affine_params(n: int, in_size: int, out_size: int, rotate: float, shear: float, flip: bool,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image inverse maps for `affine_grid`: output crop coords -> input coords, (n, 2, 3).

    Rotation uniform in [-rotate, rotate] degrees, x-shear uniform in [-shear, shear] degrees,
    horizontal flip with p=0.5, and a crop of out_size at a uniform offset inside in_size (both in
    pixels of the square input). The random draws come from `generator` (CPU) for reproducibility.
    """
    u = torch.rand(n, 5, generator=generator, dtype=torch.float64)
    rot = math.radians(rotate) * (2 * u[:, 0] - 1)
    sh = math.tan(math.radians(shear)) * (2 * u[:, 1] - 1)
    sign = torch.where(u[:, 2] < 0.5, -1.0, 1.0) if flip else torch.ones(n, dtype=torch.float64)
    # Crop: output [-1, 1] covers out/in of the input, centred at a random offset.
    scale = out_size / in_size
    slack = (in_size - out_size) / in_size  # room to move the crop centre, in normalised units
    cx = slack * (2 * u[:, 3] - 1)
    cy = slack * (2 * u[:, 4] - 1)
    cos, sin = torch.cos(rot), torch.sin(rot)
    # Inverse map = Flip . Rot . Shear applied to the crop-centred point (angles are symmetric, so
    # sampling the inverse is sampling the forward transform).
    a = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (n, 2, 2)
    s = torch.zeros(n, 2, 2, dtype=torch.float64)
    s[:, 0, 0] = 1
    s[:, 0, 1] = sh
    s[:, 1, 1] = 1
    m = a @ s
    m[:, 0, :] *= sign[:, None]
    theta = torch.empty(n, 2, 3, dtype=torch.float64)
    theta[:, :, :2] = m * scale
    theta[:, :, 2] = (m @ torch.stack([cx, cy], 1)[:, :, None])[:, :, 0]
    return theta.float()


def affine_grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """`F.affine_grid(theta, [n, C, size, size], align_corners=False)`: (n, 2, 3) -> (n, size, size, 2),
    as two broadcast sums (x and y are each a sum of a row term and a column term). torch's version
    is a batched matrix product with an inner dimension of 3: 10-20x slower on a CPU."""
    n = theta.shape[0]
    centre = (torch.arange(size, device=theta.device, dtype=theta.dtype) * 2 + 1) / size - 1  # pixel centres
    grid = torch.empty(n, size, size, 2, device=theta.device, dtype=theta.dtype)
    for k in range(2):
        by_column = theta[:, k, 0, None] * centre + theta[:, k, 2, None]  # (n, W)
        by_row = theta[:, k, 1, None] * centre  # (n, H)
        torch.add(by_column[:, None, :], by_row[:, :, None], out=grid[..., k])
    return grid


def augment_batch(x_uint8_nhwc: torch.Tensor, out_size: int, rotate: float, shear: float, flip: bool,
                  generator: torch.Generator | None = None, norm: Norm = IMAGENET_NORM) -> torch.Tensor:
    """Random flip/rotate/shear/crop of a uint8 (N, S, S, 3) batch -> normalised float (N, 3, out, out).

    Pixels warped in from outside the image are black, as torchvision's RandomRotation leaves them.
    """
    n, in_size = x_uint8_nhwc.shape[0], x_uint8_nhwc.shape[1]
    theta = affine_params(n, in_size, out_size, rotate, shear, flip, generator).to(x_uint8_nhwc.device)
    x = x_uint8_nhwc.permute(0, 3, 1, 2).float()
    # Warp raw 0..255 values so out-of-image zeros stay black after normalisation.
    out = F.grid_sample(x, affine_grid(theta, out_size), mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return _normalize_(out, 255, norm)
