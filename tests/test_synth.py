import argparse
import re
from collections import Counter

import cv2
import numpy as np
import pytest
from PIL import Image

from ageest.data import synth
from ageest.data.align import align_face, keypoints_from_landmarks
from ageest.data.imageio import load_rgb
from ageest.data.landmarks import read_pts
from ageest.data.synth import make_synthetic, synthetic_plan

N_SUBJECTS = 20


@pytest.fixture(scope="module")
def synset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return out, make_synthetic(out, seed=0, n_subjects=N_SUBJECTS, workers=2)


def _age(p):
    return int(p.name[4:6])


def test_layout_and_names(synset):
    out, paths = synset
    images = sorted(p.name for p in (out / "images").iterdir())
    points = sorted(p.name for p in (out / "points").iterdir())
    assert images == sorted(p.name for p in paths) and len(images) > 6 * N_SUBJECTS
    assert all(re.fullmatch(r"\d{3}A\d{2}[ab]?\.JPG", n) for n in images)
    assert points == sorted(n[:-4].lower() + ".pts" for n in images)
    assert {n[:3] for n in images} == {f"{s:03d}" for s in range(1, N_SUBJECTS + 1)}
    stems = Counter(n[:6] for n in images if n[6] in "ab")
    assert all(c == 2 for c in stems.values())  # a/b only ever come in pairs
    assert not {n[:6] + ".JPG" for n in stems} & set(images)


def test_plan_matches_fgnet_statistics():
    plan = synthetic_plan(0, 82)
    ages = np.array([a for _, a, _ in plan])
    assert 900 <= len(plan) <= 1100 and {s for s, _, _ in plan} == set(range(1, 83))
    assert ages.min() == 0 and ages.max() <= 69
    assert (ages < 20).mean() > 0.6 and (ages > 50).mean() < 0.05 and (ages > 40).sum() > 20
    for s in range(1, 83):
        sub = [a for t, a, _ in plan if t == s]
        assert 6 <= len(sub) <= 18 and max(sub) - min(sub) >= 5


def test_images_sizes_and_modes(synset):
    _, paths = synset
    modes = Counter()
    for p in paths:
        with Image.open(p) as im:
            assert 300 <= im.width <= 640 and 300 <= im.height <= 640
            modes[im.mode] += 1
    assert modes["L"] > 0.08 * len(paths) and modes["RGB"] > 0.5 * len(paths)


def test_deterministic_and_independent_of_workers(synset, tmp_path):
    out, _ = synset  # written by 2 processes; rewrite two subjects in one, twice
    for d in ("a", "b"):
        make_synthetic(tmp_path / d, seed=0, n_subjects=2, workers=1)
    for sub in ("images", "points"):
        names = sorted(p.name for p in (tmp_path / "a" / sub).iterdir())
        assert names
        for n in names:
            data = (tmp_path / "a" / sub / n).read_bytes()
            assert data == (tmp_path / "b" / sub / n).read_bytes() == (out / sub / n).read_bytes()


def test_different_seeds_give_different_data(tmp_path):
    a = make_synthetic(tmp_path / "a", seed=0, n_subjects=2, workers=1)
    b = make_synthetic(tmp_path / "b", seed=1, n_subjects=2, workers=1)
    assert synthetic_plan(0, 2) != synthetic_plan(1, 2)
    assert sorted(p.name for p in a) != sorted(p.name for p in b)  # other ages

    def look(p):  # pixels, not JPEG bytes: grey, on a common grid
        return np.asarray(Image.open(p).convert("L").resize((64, 64)), float)

    looks_a = [look(p) for p in a]
    for p in b:  # no image of seed 1 repeats one of seed 0
        assert min(np.abs(look(p) - q).mean() for q in looks_a) > 3, p.name
    same_name = sorted({p.name for p in a} & {p.name for p in b})
    assert same_name  # one subject at one age under both seeds: a different photo, other landmarks
    for n in same_name:
        assert np.abs(look(tmp_path / "a" / "images" / n) - look(tmp_path / "b" / "images" / n)).mean() > 3
        pts = n[:-4].lower() + ".pts"
        assert not np.allclose(read_pts(tmp_path / "a" / "points" / pts), read_pts(tmp_path / "b" / "points" / pts))


def test_points_match_drawn_face(synset):
    out, paths = synset
    for p in paths[::25]:
        grey = np.asarray(Image.open(p).convert("L"), np.float32)
        lm = read_pts(out / "points" / (p.stem.lower() + ".pts"))
        h, w = grey.shape
        assert (lm[27:37, 0] > 0).all() and (lm[27:37, 0] < w).all() and (lm[27:37, 1] < h).all()
        px = lambda q: grey[int(round(q[1])), int(round(q[0]))]  # noqa: E731
        cheek = [(lm[2] + lm[39]) / 2, (lm[12] + lm[43]) / 2]
        assert max(px(lm[31]), px(lm[36])) < min(px(c) for c in cheek) - 30, p.name  # dark pupils
        assert px(lm[48:60].mean(0)) < px((lm[41] + lm[51]) / 2) + 10  # lips vs upper lip skin


def test_age_is_learnable_across_subjects(synset):
    """Ridge regression on 12x12 aligned grey crops beats predicting the mean on new subjects."""
    out, paths = synset
    x, y, s = [], [], []
    for p in paths:
        crop = align_face(load_rgb(p), keypoints_from_landmarks(read_pts(out / "points" / (p.stem.lower() + ".pts"))), 64)
        g = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (12, 12), interpolation=cv2.INTER_AREA)
        g = g.astype(float).ravel()
        x.append((g - g.mean()) / (g.std() + 1e-6))
        y.append(_age(p))
        s.append(int(p.name[:3]))
    x, y, s = np.array(x), np.array(y, float), np.array(s)
    tr, te = s <= 14, s > 14
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
    xs = (x - mu) / sd
    t = np.log1p(y[tr])
    w = np.linalg.solve(xs[tr].T @ xs[tr] + 50 * np.eye(xs.shape[1]), xs[tr].T @ (t - t.mean()))
    pred = np.expm1(xs[te] @ w + t.mean())
    mae, base = np.abs(pred - y[te]).mean(), np.abs(y[tr].mean() - y[te]).mean()
    assert mae < 0.8 * base, (mae, base)


def test_cli(tmp_path):
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "o"), "--seed", "4", "--subjects", "1"])
    assert synth.run(args) == 0
    assert len(list((tmp_path / "o" / "images").glob("001A*.JPG"))) >= 6
