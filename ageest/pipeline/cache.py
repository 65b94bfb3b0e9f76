"""Decode, align and resize every image once per study into one uint8 array fold jobs memory-map.

The cache is `NAME.npy` (N, S, S, 3) with `NAME.npy.json` beside it (image names, data
fingerprint, the digest of the landmark files it was aligned with, geometry). It is built under a
file lock and renamed into place, so many fold jobs starting at once build it once and never read
a half-written one.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from ageest.config import Config, add_config_arguments, load_config
from ageest.errors import DataError
from ageest.data.dataset import add_data_arguments, read_records
from ageest.data.fgnet import Record, data_fingerprint, landmarks_digest, load_rgb
from ageest.io import atomic_path, remove_temporaries, write_json_atomic
from ageest.data.landmarks import default_points_dir  # re-exported: train and baselines import it from here

CACHE_VERSION = 1


def square_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to `size`, then the central square: the unaligned view (the reference recipe's Resize)."""
    h, w = rgb.shape[:2]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    r = cv2.resize(rgb, (nw, nh), interpolation=interp)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(r[top:top + size, left:left + size])


def preprocess_image(record: Record, size: int, align: str, points_dir: Path | None,
                     fallback: bool) -> tuple[np.ndarray, bool]:
    """One image as the network sees it before augmentation: (S, S, 3) uint8, and whether it is
    unaligned although alignment was asked for (the fallback)."""
    rgb = load_rgb(record.path)
    if align == "none":
        return square_resize(rgb, size), False
    from ageest.data.align import align_face, keypoints_from_landmarks
    from ageest.data.landmarks import landmark_file, read_pts

    pts_path = landmark_file(record, points_dir)
    try:
        if pts_path is None:
            where = "the manifest's points column" if record.from_table else points_dir
            raise DataError(f"{record.path}: no landmark file (.pts) for it in {where}")
        return align_face(rgb, keypoints_from_landmarks(read_pts(pts_path)), size), False
    except DataError:
        if not fallback:
            raise
        return square_resize(rgb, size), True


def cache_meta(records: Sequence[Record], config: Config, points_dir: Path | None) -> dict:
    """What a cache is built from: every key but points_dir must match for a cache to be used.

    `landmarks`: with alignment, the digest of the `.pts` bytes each image is aligned with
    (fgnet.landmarks_digest), so an edited landmark file never reuses the old aligned crops.
    """
    aligned = config.align != "none"
    return {
        "version": CACHE_VERSION,
        "names": [r.name for r in records],
        "fingerprint": data_fingerprint(records),
        "landmarks": landmarks_digest(points_dir, list(records)) if aligned else None,
        "size": config.resize_size,
        "align": config.align,
        "align_fallback": config.align_fallback,
        "points_dir": str(points_dir) if config.align != "none" else None,
    }


def build_array(records: Sequence[Record], config: Config, points_dir: Path | None,
                workers: int | None = None) -> tuple[np.ndarray, list[bool]]:
    size = config.resize_size
    out = np.empty((len(records), size, size, 3), dtype=np.uint8)
    fell_back = [False] * len(records)

    def work(i: int) -> None:
        out[i], fell_back[i] = preprocess_image(records[i], size, config.align, points_dir,
                                                config.align_fallback)

    # PIL decoding and OpenCV release the GIL: threads use every core without pickling images.
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        list(pool.map(work, range(len(records))))
    return out, fell_back


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_meta(path: Path) -> dict | None:
    meta = path.with_name(path.name + ".json")
    if not (path.is_file() and meta.is_file()):
        return None
    try:
        return json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _landmarks_edited_since(path: Path, records: Sequence[Record], points_dir: Path | None) -> list[str]:
    """The landmark files of `records` modified after the cache at `path` was finished."""
    from ageest.data.landmarks import landmark_file

    built = path.with_name(path.name + ".json").stat().st_mtime
    found = (landmark_file(r, points_dir) for r in records)
    return sorted(p.name for p in found if p is not None and p.stat().st_mtime > built)


def open_cache(path: str | Path, records: Sequence[Record], config: Config, points_dir: Path | None,
               build: bool = True) -> tuple[np.ndarray, dict]:
    """The cached array for these records and geometry, memory-mapped read-only.

    Built (once, under a lock) if missing and `build`; a cache made from other data or another
    geometry is refused by name rather than silently used.
    """
    path = Path(path)
    want = cache_meta(records, config, points_dir)
    want_key = {k: v for k, v in want.items() if k != "points_dir"}
    with _locked(path):
        meta = read_meta(path)
        if meta is None:
            if not build:
                raise DataError(f"preprocessing cache not found: {path} (run `ageest prepare`)")
            remove_temporaries([path, path.with_name(path.name + ".json")])  # a killed build's, we hold the lock
            arr, fell_back = build_array(records, config, points_dir)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, arr)
            # The array first, the metadata last: no metadata means no (or an unfinished) cache.
            write_json_atomic(path.with_name(path.name + ".json"),
                              {**want, "fallback": [r.name for r, b in zip(records, fell_back) if b],
                               "built_by_pid": os.getpid()})
            meta = read_meta(path)
        have_key = {k: meta.get(k) for k in want_key}
        if "landmarks" not in meta and want_key["landmarks"] is not None:
            # Built before caches recorded their landmarks: trusted only if no landmark file it
            # aligned with has changed since it was finished.
            edited = _landmarks_edited_since(path, records, points_dir)
            if edited:
                raise DataError(f"preprocessing cache {path} predates landmark file(s) edited since "
                                f"({', '.join(edited[:5])}{', ...' if len(edited) > 5 else ''}); "
                                "delete it or point --cache elsewhere")
            have_key["landmarks"] = want_key["landmarks"]
        if have_key != want_key:
            diff = [k for k in want_key if have_key[k] != want_key[k]]
            raise DataError(f"preprocessing cache {path} was built for other data or settings "
                            f"(differs in: {', '.join(diff)}); delete it or point --cache elsewhere")
    arr = np.load(path, mmap_mode="r")
    if arr.shape != (len(records), want["size"], want["size"], 3):
        raise DataError(f"preprocessing cache {path} is damaged (shape {arr.shape}); delete it")
    return arr, meta


def default_cache_path(records: Sequence[Record], config: Config, points_dir: Path | None = None) -> Path:
    """$AGEEST_CACHE_DIR (default ~/.cache/ageest)/TAG.npy, TAG naming the data (with alignment,
    the landmark files too: `points_dir`, default points/ beside the images) and the geometry."""
    root = Path(os.environ.get("AGEEST_CACHE_DIR") or Path.home() / ".cache" / "ageest")
    if config.align != "none" and points_dir is None and records:
        points_dir = default_points_dir(records[0].path.parent)
    fingerprint = data_fingerprint(records, points_dir if config.align != "none" else None)
    tag = f"{fingerprint}-{config.align}{'-fb' if config.align_fallback else ''}-{config.resize_size}"
    return root / f"{tag}.npy"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    p.add_argument("--points", default=None, help="landmark folder (default: images/../points)")
    p.add_argument("--out", required=True, help="cache file to write (.npy; metadata goes to OUT.json)")
    add_config_arguments(p, "training config YAML (image_size, align matter here)")


def run(args: argparse.Namespace) -> int:
    """Decode, align and resize every image once into a cache that fold jobs memory-map."""
    config = load_config(args.config, args.overrides)
    images = Path(args.images)
    records = read_records(images, args.root)
    points = Path(args.points) if args.points else default_points_dir(images)
    arr, meta = open_cache(args.out, records, config, points)
    print(f"cache {args.out}: {arr.shape[0]} images at {arr.shape[1]} px, align={config.align}, "
          f"{len(meta.get('fallback', []))} unaligned by fallback")
    return 0
