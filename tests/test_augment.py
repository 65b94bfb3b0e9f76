import math

import numpy as np
import pytest
import torch

from ageest.pipeline.augment import (IMAGENET_MEAN, IMAGENET_STD, affine_grid, affine_params, augment_batch, center_crop,
                            normalize)


def _img(n=2, s=16):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, s, s, 3), generator=g, dtype=torch.uint8)


def test_identity_when_nothing_random():
    x = _img()
    out = augment_batch(x, 16, rotate=0, shear=0, flip=False)
    assert torch.allclose(out, normalize(x), atol=1e-4)


def test_flip_only():
    x = _img(n=64)
    out = augment_batch(x, 16, rotate=0, shear=0, flip=True, generator=torch.Generator().manual_seed(1))
    ref, flipped = normalize(x), normalize(x).flip(-1)
    same = [torch.allclose(o, r, atol=1e-4) for o, r in zip(out, ref)]
    flip = [torch.allclose(o, f, atol=1e-4) for o, f in zip(out, flipped)]
    assert all(a or b for a, b in zip(same, flip)) and 10 < sum(flip) < 54


@pytest.mark.parametrize("size", [1, 7, 224])
def test_affine_grid_is_torchs(size):
    theta = affine_params(5, 256, 224, 10, 16, True, torch.Generator().manual_seed(7))
    ours = affine_grid(theta, size)
    ref = torch.nn.functional.affine_grid(theta, [5, 3, size, size], align_corners=False)
    assert ours.shape == ref.shape == (5, size, size, 2)
    assert (ours - ref).abs().max() < 1e-6


def test_affine_grid_by_hand():
    # Two pixels a side: centres at -1/2 and +1/2. A pure shift by (0.25, -1) moves every point so.
    theta = torch.tensor([[[1.0, 0.0, 0.25], [0.0, 1.0, -1.0]]])
    grid = affine_grid(theta, 2)
    assert torch.equal(grid[0, :, :, 0], torch.tensor([[-0.25, 0.75], [-0.25, 0.75]]))
    assert torch.equal(grid[0, :, :, 1], torch.tensor([[-1.5, -1.5], [-0.5, -0.5]]))
    # x_in = y_out (a transpose): the x coordinate follows the row.
    grid = affine_grid(torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]]), 2)
    assert torch.equal(grid[0, :, :, 0], torch.tensor([[-0.5, -0.5], [0.5, 0.5]]))


def test_normalize_by_hand():
    x = torch.tensor([[[[0, 255, 128]]]], dtype=torch.uint8)  # one pixel, (1, 1, 1, 3)
    out = normalize(x)
    want = [(0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], (1 - IMAGENET_MEAN[1]) / IMAGENET_STD[1],
            (128 / 255 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]]
    assert out.shape == (1, 3, 1, 1) and out.dtype == torch.float32
    assert torch.allclose(out.flatten(), torch.tensor(want), atol=1e-6)


def _bilinear_window(img, top, left, size):
    """The size x size window of img (H, W, C) at fractional offset (top, left), bilinear."""
    t0, l0 = math.floor(top), math.floor(left)
    ft, fl = top - t0, left - l0
    pad = np.pad(img, ((0, 1), (0, 1), (0, 0)))  # only ever read with weight 0
    a, b = pad[t0:t0 + size, l0:l0 + size], pad[t0:t0 + size, l0 + 1:l0 + size + 1]
    c, d = pad[t0 + 1:t0 + size + 1, l0:l0 + size], pad[t0 + 1:t0 + size + 1, l0 + 1:l0 + size + 1]
    return (1 - ft) * ((1 - fl) * a + fl * b) + ft * ((1 - fl) * c + fl * d)


def _raw(out):
    """Normalised (N, 3, H, W) back to 0..255 (N, H, W, 3)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    return (out * std + mean).permute(0, 2, 3, 1).double().numpy()


def test_crop_is_a_window_of_the_input():
    n, s, size = 200, 20, 16
    x = _img(n=n, s=s)
    out = _raw(augment_batch(x, size, rotate=0, shear=0, flip=False, generator=torch.Generator().manual_seed(2)))
    theta = affine_params(n, s, size, 0, 0, False, torch.Generator().manual_seed(2)).double()
    # Without rotation or shear the map is x_in = scale * x_out + t: a window at offset
    # (s - size) / 2 + t * s / 2 pixels, fractional in general.
    assert torch.allclose(theta[:, :, :2], torch.eye(2, dtype=torch.float64) * size / s)
    left = (s - size) / 2 + theta[:, 0, 2].numpy() * s / 2
    top = (s - size) / 2 + theta[:, 1, 2].numpy() * s / 2
    for i in range(n):
        window = _bilinear_window(x[i].double().numpy(), top[i], left[i], size)
        assert np.abs(out[i] - window).max() < 1e-2, i
    # The offsets fill the whole room the input leaves, uniformly, on both axes.
    for off in (left, top):
        assert off.min() >= -1e-5 and off.max() <= s - size + 1e-5
        assert off.min() < 0.3 and off.max() > s - size - 0.3
        assert abs(off.mean() - (s - size) / 2) < 0.3


def _angles(theta, in_size, out_size):
    """(rotation degrees, x-shear degrees, flipped) of each inverse map theta = Flip . Rot . Shear."""
    m = theta[:, :, :2].double() / (out_size / in_size)
    sign = torch.sign(torch.linalg.det(m))  # the flip is the only reflection
    unflipped = m.clone()
    unflipped[:, 0, :] *= sign[:, None]
    rot = torch.atan2(unflipped[:, 1, 0], unflipped[:, 0, 0])
    cos, sin = torch.cos(rot), torch.sin(rot)
    r_t = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)
    shear = r_t @ unflipped  # what is left once the rotation is undone: [[1, tan(shear)], [0, 1]]
    assert torch.allclose(shear[:, 0, 0], torch.ones(len(m), dtype=torch.float64), atol=1e-5)
    assert torch.allclose(shear[:, 1, 0], torch.zeros(len(m), dtype=torch.float64), atol=1e-5)
    assert torch.allclose(shear[:, 1, 1], torch.ones(len(m), dtype=torch.float64), atol=1e-5)
    return torch.rad2deg(rot), torch.rad2deg(torch.atan(shear[:, 0, 1])), sign < 0


def test_rotation_and_shear_ranges_and_flip_rate():
    n = 4000
    t1 = affine_params(n, 256, 224, 10, 16, True, torch.Generator().manual_seed(3))
    t2 = affine_params(n, 256, 224, 10, 16, True, torch.Generator().manual_seed(3))
    assert torch.equal(t1, t2)
    rot, shear, flipped = _angles(t1, 256, 224)
    for angles, limit in ((rot, 10), (shear, 16)):
        # Uniform in [-limit, limit]: bounded, reaching both ends, half of them within limit / 2.
        assert angles.abs().max() <= limit + 1e-3
        assert angles.min() < -0.98 * limit and angles.max() > 0.98 * limit
        assert abs((angles.abs() < limit / 2).double().mean().item() - 0.5) < 0.03
        assert abs(angles.mean().item()) < 0.05 * limit
    assert abs(flipped.double().mean().item() - 0.5) < 0.03
    rot, shear, flipped = _angles(affine_params(500, 64, 56, 0, 0, False, torch.Generator().manual_seed(4)), 64, 56)
    assert rot.abs().max() < 1e-4 and shear.abs().max() < 1e-4 and not flipped.any()


def test_center_crop():
    x = _img(n=1, s=10)
    assert torch.equal(center_crop(x, 6), x[:, 2:8, 2:8])


@pytest.mark.parametrize("size, in_size, top", [(6, 10, 2), (5, 12, 4), (5, 10, 2)])
def test_center_crop_is_placed_as_torchvisions(size, in_size, top):
    from torchvision.transforms import functional as TF

    x = _img(n=1, s=in_size)
    ref = TF.center_crop(x[0].permute(2, 0, 1), [size, size]).permute(1, 2, 0)
    assert torch.equal(center_crop(x, size)[0], ref)
    assert torch.equal(center_crop(x, size), x[:, top:top + size, top:top + size])


# --- the plain pipeline (the reference recipe's PIL way) against the fast one, in geometry ------------------


def _sources(images, size):
    from ageest.pipeline.cache import build_array
    from ageest.config import Config
    from ageest.pipeline.sources import PlainSource, TensorSource
    from ageest.data.fgnet import scan_images

    records = scan_images(images)
    config = Config(image_size=size, rotate=0, shear=0, flip=False, pretrained="none", device="cpu",
                    eval_batch_size=7)
    arr, _ = build_array(records, config, None, workers=1)
    cpu = torch.device("cpu")
    return records, config, arr, TensorSource(arr, [r.age for r in records], config, cpu), \
        PlainSource(records, config, cpu, workers=0)


@pytest.mark.parametrize("size", [32, 48, 64])
def test_plain_and_fast_eval_views_are_the_same_crop(blobs, size):
    _, config, arr, fast, plain = _sources(blobs, size)
    assert arr.shape[1:] == (config.resize_size, config.resize_size, 3)
    xf, yf = map(torch.cat, zip(*fast.eval_batches()))
    xp, yp = map(torch.cat, zip(*plain.eval_batches()))
    assert xf.shape == xp.shape == (len(arr), 3, size, size) and torch.equal(yf, yp)
    # Same pixels of the same resized image: only float rounding (PIL's ToTensor vs uint8 / 255).
    assert (xf - xp).abs().max() < 1e-5


def _offsets(views, resized):
    """Integer (top, left) of the window of `resized` (H, W, 3) each view (N, S, S, 3) is closest to."""
    size, room = views.shape[1], resized.shape[0] - views.shape[1]
    cands = [(t, l) for t in range(room + 1) for l in range(room + 1)]
    windows = np.stack([resized[t:t + size, l:l + size] for t, l in cands])  # (K, S, S, 3)
    err = ((views[:, None] - windows[None]) ** 2).mean(axis=(2, 3, 4))  # (N, K)
    best = err.argmin(1)
    return np.array([cands[k] for k in best], float), err[np.arange(len(views)), best]


def test_plain_and_fast_training_views_crop_alike_without_augmentation(blobs):
    """rotate=0, shear=0, flip=False: both paths take size x size windows of the same resized image,
    anywhere in the room it leaves, centred on average on its centre."""
    from ageest.pipeline.sources import _PlainDataset

    size, n = 32, 300
    records, config, arr, _, _ = _sources(blobs, size)
    room = config.resize_size - size
    resized = arr[0].astype(float)
    fast = _raw(augment_batch(torch.from_numpy(np.repeat(arr[:1], n, 0)), size, config.rotate, config.shear,
                              config.flip, torch.Generator().manual_seed(5)))
    torch.manual_seed(5)  # torchvision's RandomCrop draws from torch's global generator
    ds = _PlainDataset(records[:1], config, None, train=True)
    plain = _raw(torch.stack([ds[0][0] for _ in range(n)]))
    assert fast.shape == plain.shape == (n, size, size, 3)
    for views, exact in ((plain, True), (fast, False)):
        off, err = _offsets(views, resized)
        if exact:  # PIL crops whole pixels
            assert err.max() < 1e-6
        assert (off.min(0) == 0).all() and (off.max(0) == room).all()  # the whole room, both axes
        assert np.abs(off.mean(0) - room / 2).max() < 0.4, off.mean(0)
