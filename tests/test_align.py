import argparse

import cv2
import numpy as np
import pytest
from PIL import Image

from ageest.data import align
from ageest.data.align import TEMPLATE, align_face, fit_similarity, keypoints_from_landmarks
from ageest.errors import DataError
from ageest.data.imageio import load_rgb
from ageest.data.landmarks import read_pts, write_pts
from ageest.data.synth import _render_one


def _similarity(angle_deg, scale, t):
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * scale, np.asarray(t, float)


def test_fit_similarity_recovers_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (10, 2))
    r, t = _similarity(23, 1.7, [5, -12])
    m = fit_similarity(src, src @ r.T + t)
    np.testing.assert_allclose(m[:, :2], r, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-7)


def test_fit_similarity_never_reflects():
    src = np.array([[0, 0], [10, 0], [5, 10]], float)
    m = fit_similarity(src, src * [-1, 1])  # a mirror image: best proper rotation only
    assert np.linalg.det(m[:, :2]) > 0


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_keypoints_land_on_template(noise):
    size = 200
    r, t = _similarity(-17, 2.3, [40, 75])
    kp = (TEMPLATE * size - size / 2) @ r.T + t + size
    kp += np.random.default_rng(1).normal(0, noise, kp.shape)
    m = fit_similarity(kp, TEMPLATE * size)
    out = kp @ m[:, :2].T + m[:, 2]
    err = np.linalg.norm(out - TEMPLATE * size, axis=1)
    assert err[:2].max() < (0.01 if noise == 0 else 2.0)
    assert err[2] < (0.01 if noise == 0 else 3.0)


def _dark_centre(crop, c, r):
    """Darkest spot (after blurring) within r px of c: where a synthetic pupil lies."""
    g = cv2.GaussianBlur(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
    x0, y0 = int(c[0] - r), int(c[1] - r)
    win = g[y0:y0 + 2 * r, x0:x0 + 2 * r]
    yy, xx = np.unravel_index(np.argmin(win), win.shape)
    return np.array([x0 + xx, y0 + yy], float)


def test_rotated_scaled_face_comes_out_upright():
    img, lm, _ = _render_one(0, 3, 5, 30)
    img = np.asarray(img if img.ndim == 3 else np.repeat(img[..., None], 3, 2))
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 28, 0.7)  # extra tilt and shrink
    tilted = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    kp = keypoints_from_landmarks(lm @ m[:, :2].T + m[:, 2])
    size = 128
    crop = align_face(tilted, kp, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    left, right = (_dark_centre(crop, c, 8) for c in TEMPLATE[:2] * size)
    assert abs(left[1] - right[1]) <= 2  # eye line horizontal
    assert np.abs(left - TEMPLATE[0] * size).max() <= 4
    assert np.abs(right - TEMPLATE[1] * size).max() <= 4


def test_greyscale_input():
    grey = np.tile(np.arange(100, dtype=np.uint8), (80, 1))
    out = align_face(grey, np.array([[30.0, 30], [60, 30], [45, 60]]), 64)
    assert out.shape == (64, 64, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_align_from_files_and_preview(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "points").mkdir()
    for i, age in enumerate((4, 40)):
        img, lm, mode = _render_one(1, 1, i, age)
        Image.fromarray(img, mode=mode).save(tmp_path / "images" / f"001A{age:02d}.JPG")
        write_pts(tmp_path / "points" / f"001a{age:02d}.pts", lm)
    crop = align_face(load_rgb(tmp_path / "images" / "001A04.JPG"),
                      keypoints_from_landmarks(read_pts(tmp_path / "points" / "001a04.pts")), 96)
    assert crop.shape == (96, 96, 3)

    parser = argparse.ArgumentParser()
    align.add_arguments(parser)
    out = tmp_path / "prev" / "p.png"
    args = parser.parse_args([str(tmp_path / "images"), "--out", str(out), "-n", "2"])
    assert align.run(args) == 0
    with Image.open(out) as im:
        assert im.size == (3 * 2 * 160, 160)


def test_preview_errors(tmp_path):
    with pytest.raises(DataError, match="images folder not found"):
        align.make_alignment_preview(tmp_path / "nope", tmp_path / "x.png")
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="points folder not found"):
        align.make_alignment_preview(tmp_path / "images", tmp_path / "x.png")
    (tmp_path / "points").mkdir()
    with pytest.raises(DataError, match="no images with a matching .pts"):
        align.make_alignment_preview(tmp_path / "images", tmp_path / "x.png")
