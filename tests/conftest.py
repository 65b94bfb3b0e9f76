"""Shared fixtures: small data sets in FG-NET's layout, made on the fly (never the real FG-NET)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ageest.data import synth

TINY = {"epochs": 2, "freeze_epochs": 1, "image_size": 32, "pretrained": "none", "batch_size": 16,
        "arch": "resnet18", "threads": 2}


def tiny_overrides(**extra) -> list[str]:
    return [f"{k}={v}" for k, v in {**TINY, **extra}.items()]


def write_blobs(folder: Path, subjects: int = 6, per_subject: int = 5, seed: int = 0) -> Path:
    """Plain FG-NET-named JPEGs whose brightness grows with age: fast, for data-handling tests."""
    rng = np.random.default_rng(seed)
    img_dir = folder / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for s in range(1, subjects + 1):
        for a in sorted(rng.choice(70, per_subject, replace=False)):
            v = int(40 + a * 2.5)
            arr = (rng.random((60, 80, 3)) * 30 + v).clip(0, 255).astype("uint8")
            Image.fromarray(arr).save(img_dir / f"{s:03d}A{a:02d}.JPG")
    return img_dir


@pytest.fixture
def blobs(tmp_path: Path) -> Path:
    return write_blobs(tmp_path / "blobs")


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    """The package's synthetic faces, 8 subjects: images/ and points/ like FG-NET."""
    from ageest.data.synth import make_synthetic

    out = tmp_path_factory.mktemp("synth")
    make_synthetic(out, seed=0, n_subjects=8)
    return out / "images"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    # Tests never write to the user's cache or GPU-lock folders; session-wide, so that the fixtures
    # that train or run a study once for several tests (module scope) are isolated too.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGEEST_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        mp.setenv("AGEEST_LOCK_DIR", str(tmp_path_factory.getbasetemp() / "locks"))
        yield


def make_photo(faces, size=(640, 480), seed: int = 0, return_landmarks: bool = False):
    """A "group photo" for the detection tests: synthetic people side by side on one background
    (the synthetic faces of ageest.data.synth).

    faces: list of (age, subject_seed), may be empty; size: (width, height) pixels.
    Returns (rgb uint8 (h, w, 3), boxes) with one (x, y, w, h) int box per face, spanning its
    68 landmarks (brows to chin, ear to ear); with return_landmarks also the (68, 2) arrays.
    """
    w, h = size
    rng = np.random.default_rng([seed, 7])
    img = synth._background(w, h, rng)
    boxes, lms = [], []
    n = len(faces)
    for i, (age, sseed) in enumerate(faces):
        slot = w / n
        k = min(slot / 3.2, h / 5.0) * rng.uniform(0.85, 1.0)
        x = slot * (i + 0.5) + rng.uniform(-0.05, 0.05) * slot
        y = h * 0.42 + rng.uniform(-0.05, 0.05) * h
        sub = synth._subject(np.random.default_rng([sseed, 0]))
        lm = synth._render_person(img, sub, float(age), k, (x, y), rng.normal(0, 5),
                                  np.random.default_rng([sseed, int(age), 3]))
        x0, y0 = lm.min(0)
        x1, y1 = lm.max(0)
        boxes.append((int(x0), int(y0), int(round(x1 - x0)), int(round(y1 - y0))))
        lms.append(lm)
    out = synth._finish(img, rng)
    return (out, boxes, lms) if return_landmarks else (out, boxes)
