import torch

from ageest.augment import affine_params, augment_batch, center_crop, normalize


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


def test_crop_is_a_window_of_the_input():
    x = _img(n=8, s=20)
    g = torch.Generator().manual_seed(2)
    out = augment_batch(x, 16, rotate=0, shear=0, flip=False, generator=g)
    theta = affine_params(8, 20, 16, 0, 0, False, torch.Generator().manual_seed(2))
    for i in range(8):
        # Translation in pixels of a 20-px input: offsets are whole or half pixels at most 4.
        left = round((theta[i, 0, 2].item() * 10) + 10 - 8)
        top = round((theta[i, 1, 2].item() * 10) + 10 - 8)
        window = normalize(x[i:i + 1, top:top + 16, left:left + 16])
        if float(theta[i, 0, 2] * 10) % 1 == 0 and float(theta[i, 1, 2] * 10) % 1 == 0:
            assert torch.allclose(out[i:i + 1], window, atol=1e-3)
    assert (theta[:, :, 2].abs() <= 4 / 20 + 1e-6).all()


def test_rotation_bounded_and_reproducible():
    t1 = affine_params(500, 256, 224, 10, 16, True, torch.Generator().manual_seed(3))
    t2 = affine_params(500, 256, 224, 10, 16, True, torch.Generator().manual_seed(3))
    assert torch.equal(t1, t2)
    det = torch.linalg.det(t1[:, :, :2]).abs() / (224 / 256) ** 2
    assert torch.allclose(det, torch.ones(500), atol=1e-4)  # rotation, flip, shear keep area


def test_center_crop():
    x = _img(n=1, s=10)
    assert torch.equal(center_crop(x, 6), x[:, 2:8, 2:8])
