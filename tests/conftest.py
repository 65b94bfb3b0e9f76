"""Shared fixtures: small data sets in FG-NET's layout, made on the fly (never the real FG-NET)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
