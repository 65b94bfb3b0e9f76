"""The shared preprocessing cache: built once under concurrency, never half-written, never mixed up."""

import multiprocessing as mp

import numpy as np
import pytest

from ageest.pipeline.cache import CACHE_VERSION, default_cache_path, open_cache, read_meta
from ageest.config import Config
from ageest.errors import DataError
from ageest.data.fgnet import scan_images

CFG = Config(image_size=32, pretrained="none")


def _open(args):
    images, path = args
    arr, meta = open_cache(path, scan_images(images), CFG, None)
    return meta["built_by_pid"], np.asarray(arr).sum()


def test_many_jobs_build_once(blobs, tmp_path):
    path = tmp_path / "c" / "cache.npy"
    with mp.get_context("spawn").Pool(4) as pool:
        results = pool.map(_open, [(blobs, path)] * 4)
    assert len({pid for pid, _ in results}) == 1
    assert len({s for _, s in results}) == 1
    # Nothing else beside it: no temporary file left, no second copy.
    assert sorted(p.name for p in path.parent.iterdir()) == ["cache.npy", "cache.npy.json", "cache.npy.lock"]


def test_half_written_cache_is_rebuilt_not_read(blobs, tmp_path):
    path = tmp_path / "cache.npy"
    path.write_bytes(b"\x93NUMPY half")  # an array file without its metadata: a build that died
    arr, meta = open_cache(path, scan_images(blobs), CFG, None)
    assert arr.shape == (30, CFG.resize_size, CFG.resize_size, 3)
    assert read_meta(path)["names"][0] == meta["names"][0]


def test_cache_of_other_data_or_geometry_refused(blobs, tmp_path):
    path = tmp_path / "cache.npy"
    records = scan_images(blobs)
    open_cache(path, records, CFG, None)
    with pytest.raises(DataError, match="differs in: size"):
        open_cache(path, records, CFG.replace(image_size=48), None)
    with pytest.raises(DataError, match="names"):
        open_cache(path, records[1:], CFG, None)
    with pytest.raises(DataError, match="not found"):
        open_cache(tmp_path / "other.npy", records, CFG, None, build=False)


ALIGNED = CFG.replace(align="landmarks")


@pytest.fixture
def aligned_data(synth_small, tmp_path):
    """A writable copy of the synthetic faces with their landmark files: (images, points)."""
    import shutil

    root = shutil.copytree(synth_small.parent, tmp_path / "synth")
    return root / "images", root / "points"


def _nudge(pts_file):
    """Move one eye landmark (point 28, one the alignment uses) 6 pixels to the right."""
    text = pts_file.read_text()
    lines = text.splitlines(keepends=True)
    x, y = lines[3 + 28].split()
    lines[3 + 28] = f"{float(x) + 6:.4f} {y}\n"
    pts_file.write_text("".join(lines))
    assert pts_file.read_text() != text


def test_edited_landmark_file_is_not_served_from_the_cache(aligned_data, tmp_path):
    from ageest.pipeline.cache import default_cache_path

    images, points = aligned_data
    records = scan_images(images)
    path = tmp_path / "cache.npy"
    before, meta = open_cache(path, records, ALIGNED, points)
    assert meta["landmarks"] is not None
    default_before = default_cache_path(records, ALIGNED)
    unaligned_default = default_cache_path(records, CFG)
    _nudge(points / f"{records[5].path.stem.lower()}.pts")
    with pytest.raises(DataError, match="differs in: fingerprint, landmarks"):
        open_cache(path, records, ALIGNED, points)
    # The default cache path names the landmarks too: an edit gets a cache of its own.
    assert default_cache_path(records, ALIGNED) != default_before
    assert default_cache_path(records, CFG) == unaligned_default  # unaligned: no landmarks in it
    # Rebuilt (the workflow deletes the old one), the edited landmark gives another aligned crop.
    path.unlink()
    after, _ = open_cache(path, records, ALIGNED, points)
    assert not np.array_equal(before[5], after[5]) and np.array_equal(before[4], after[4])


def test_a_cache_of_another_version_is_refused_by_name(aligned_data, tmp_path):
    import json

    images, points = aligned_data
    records = scan_images(images)
    path = tmp_path / "cache.npy"
    open_cache(path, records, ALIGNED, points)
    meta_file = tmp_path / "cache.npy.json"
    old = json.loads(meta_file.read_text())
    old["version"] = 1  # a cache from before the fingerprint took in the landmarks: rebuilt, not trusted
    meta_file.write_text(json.dumps(old))
    with pytest.raises(DataError, match="differs in: version"):
        open_cache(path, records, ALIGNED, points)
    assert f"v{CACHE_VERSION}-" in default_cache_path(records, ALIGNED, points).name