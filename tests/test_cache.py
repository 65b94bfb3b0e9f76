"""The shared preprocessing cache: built once under concurrency, never half-written, never mixed up."""

import multiprocessing as mp

import numpy as np
import pytest

from ageest.cache import open_cache, read_meta
from ageest.config import Config
from ageest.errors import DataError
from ageest.fgnet import scan_images

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
