"""Decode, align and resize every image once per study into one uint8 array fold jobs memory-map.

The cache is `NAME.npy` (N, S, S, 3) with `NAME.npy.json` beside it (image names, data
fingerprint, the digest of the landmarks it was aligned with or the detector that found the faces,
geometry; the images that fell back, those skipped for want of points, and with `align: detector`
each image's detected face). Images alignment found no points for (no face, no landmarks) are
listed in `NAME.npy.no_face.tsv`: `on_no_face: fatal` stops there, `skip` leaves them to the folds
to drop. It is built under a
file lock and renamed into place, so many fold jobs starting at once build it once and never read
a half-written one.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from ageest.config import Config, add_config_arguments, load_config
from ageest.errors import DataError
from ageest.data.reader import add_data_arguments, read_records
from ageest.data.fingerprint import Fingerprint, fold_fingerprint, landmarks_digest
from ageest.data.imageio import load_rgb
from ageest.data.records import Record
from ageest.io import atomic_path, open_lock_file, remove_temporaries, write_json_atomic, write_text_atomic
from ageest.data.landmarks import default_points_dir  # re-exported: train and baselines import it from here

# 2: the fingerprint is the fold's (landmarks included). A cache of another version is refused by
# name; the default path names the version, so a default cache is simply built anew.
CACHE_VERSION = 2


def square_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to `size`, then the central square: the unaligned view (the reference recipe's Resize)."""
    h, w = rgb.shape[:2]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    r = cv2.resize(rgb, (nw, nh), interpolation=interp)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(r[top:top + size, left:left + size])


def record_points(record: Record, points_dir: Path | None) -> np.ndarray | None:
    """An image's landmarks, (68, 2) or (5, 2) pixels: a manifest row's own x/y points, else its
    `.pts` file; None where it has neither. A malformed `.pts` raises DataError."""
    from ageest.data.landmarks import landmark_file, read_pts

    if record.keypoints is not None:
        return np.asarray(record.keypoints, dtype=np.float64)
    pts = landmark_file(record, points_dir)
    return None if pts is None else read_pts(pts)


def template_of(config: Config):
    """The alignment template of the config's network (its registry entry's `template`)."""
    from ageest.data.align import TEMPLATES
    from ageest.nn.backbones import backbone

    return TEMPLATES[backbone(config.arch).template]


_DETECTOR_LOCK = threading.Lock()


def detected_face(rgb: np.ndarray):
    """The largest face the detector finds (`detect.Face`), None if it finds none: the person a
    portrait is of fills more of it than anyone behind them."""
    from ageest.data.detect import detect_faces

    with _DETECTOR_LOCK:  # one MTCNN instance for all threads; an OpenCV dnn net runs one input at a time
        faces = detect_faces(rgb)
    return max(faces, key=lambda f: (f.box[2] * f.box[3], f.score), default=None)


def prepare_record(record: Record, config: Config, points_dir: Path | None) -> tuple[np.ndarray, str, dict | None]:
    """One image as the network sees it before augmentation, (S, S, 3) uint8 (S the config's
    resize size, aligned on its network's template); how it was made: '' (as asked), 'fallback'
    (unaligned by align_fallback) or 'missing' (no points to align on: no face found, no
    landmarks; the unaligned view stands in and on_no_face decides); and with `detector` the face
    it was aligned on (box, score, keypoints), None if none."""
    size, align, fallback = config.resize_size, config.align, config.align_fallback
    rgb = load_rgb(record.path)
    if align == "none":
        return square_resize(rgb, size), "", None
    from ageest.data.align import align_face

    face = None
    try:
        if align == "detector":
            face = detected_face(rgb)
            kp = None if face is None else face.keypoints
        else:
            kp = record_points(record, points_dir)
    except DataError:
        if not fallback:
            raise
        return square_resize(rgb, size), "fallback", None
    if kp is None:
        return square_resize(rgb, size), "fallback" if fallback else "missing", None
    found = None if face is None else {"box": [int(v) for v in face.box], "score": round(face.score, 4),
                                       "keypoints": np.round(face.keypoints, 3).tolist()}
    return align_face(rgb, kp, size, template_of(config), config.image_size), "", found


def missing_what(align: str, points_dir: Path | None) -> str:
    """What an image lacks when alignment has no points for it, in words."""
    if align == "detector":
        return "no face found by the detector"
    return f"no landmarks (no .pts file for it in {points_dir}, a manifest's points column or x/y columns)"


def preprocess_image(record: Record, config: Config, points_dir: Path | None) -> tuple[np.ndarray, bool]:
    """One image as the network sees it before augmentation: (S, S, 3) uint8, and whether it is
    unaligned although alignment was asked for (the fallback). The plain pipeline's, per sample:
    an image without points is an error here (it has no cache to list it as skipped)."""
    img, how, _ = prepare_record(record, config, points_dir)
    if how == "missing":
        raise DataError(f"{record.path}: {missing_what(config.align, points_dir)}")
    return img, how == "fallback"


def template_key(config: Config) -> str | None:
    """The template an aligned cache is made with, and the crop where it is placed in the crop
    ('dlib_chip@64'); None without alignment."""
    if config.align == "none":
        return None
    t = template_of(config)
    return f"{t.name}@{config.image_size}" if t.of_crop else t.name


def cache_meta(records: Sequence[Record], config: Config, points_dir: Path | None,
               fingerprint: Fingerprint | None = None) -> dict:
    """What a cache is built from: every key but points_dir must match for a cache to be used.
    `fingerprint`: the fold's (`fold_fingerprint`), where the caller has it already.

    `landmarks`: with landmark alignment, the digest of the landmarks each image is aligned with
    (fingerprint.landmarks_digest: `.pts` bytes, a manifest's x/y points), so an edited landmark never
    reuses the old aligned crops. `detector`: with detector alignment, which detector and version
    found the faces. `on_no_face`: how images without points were treated (None where it cannot
    apply), so a cache that skipped images is not used by a study that would stop on them.
    """
    aligned = config.align != "none"
    on_landmarks = config.align == "landmarks"
    from ageest.data.detect import detector_identity

    fingerprint = fingerprint or fold_fingerprint(list(records), config, points_dir)
    # (A fingerprint made for a config that does not align on landmarks carries no digest of them.)
    landmarks = (fingerprint.landmarks or landmarks_digest(points_dir, list(records))) if on_landmarks else None
    return {
        "version": CACHE_VERSION,
        "names": [r.name for r in records],
        "fingerprint": fingerprint.data,
        "landmarks": landmarks,
        "size": config.resize_size,
        "align": config.align,
        "template": template_key(config),
        "align_fallback": config.align_fallback,
        "detector": detector_identity() if config.align == "detector" else None,
        "on_no_face": config.on_no_face if aligned and not config.align_fallback else None,
        "points_dir": str(points_dir) if on_landmarks else None,
    }


def build_array(records: Sequence[Record], config: Config, points_dir: Path | None,
                workers: int | None = None) -> tuple[np.ndarray, list[tuple[str, dict | None]]]:
    """The cache's array, and per image how it was made and its detected face (`prepare_record`)."""
    size = config.resize_size
    out = np.empty((len(records), size, size, 3), dtype=np.uint8)
    how: list[tuple[str, dict | None]] = [("", None)] * len(records)

    def work(i: int) -> None:
        out[i], *rest = prepare_record(records[i], config, points_dir)
        how[i] = tuple(rest)

    # PIL decoding and OpenCV release the GIL: threads use every core without pickling images.
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        list(pool.map(work, range(len(records))))
    return out, how


def no_face_path(path: Path) -> Path:
    """The list of the images alignment found no points for, beside the cache: NAME.npy.no_face.tsv."""
    return path.with_name(path.name + ".no_face.tsv")


def _record_missing(path: Path, records: Sequence[Record], how: list, config: Config,
                    points_dir: Path | None) -> list[str]:
    """Write (or remove) the list of images without points; stop with one line if on_no_face is
    fatal and there are any. Returns the names of the images the cache skips."""
    missing = [r for r, (h, _) in zip(records, how) if h == "missing"]
    listing = no_face_path(path)
    if not missing:
        listing.unlink(missing_ok=True)  # a list from an earlier build would name the wrong images
        return []
    write_text_atomic(listing, "image\tpath\n" + "".join(f"{r.name}\t{r.path}\n" for r in missing))
    if config.on_no_face == "fatal":
        first = ", ".join(str(r.path) for r in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise DataError(f"{len(missing)} of {len(records)} images have {missing_what(config.align, points_dir)} "
                        f"({first}); all listed in {listing}; set on_no_face: skip to leave them out of every "
                        "fold, or align_fallback: true to use them unaligned")
    return [r.name for r in missing]


def _detections(records: Sequence[Record], how: list, config: Config) -> dict:
    """With `detector`: the face each image was aligned on (box, score, keypoints; None if none), by name."""
    if config.align != "detector":
        return {}
    return {"detections": {r.name: face for r, (_, face) in zip(records, how)}}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_lock_file(path.with_name(path.name + ".lock"), "cache lock file") as f:
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


def open_cache(path: str | Path, records: Sequence[Record], config: Config, points_dir: Path | None,
               build: bool = True, fingerprint: Fingerprint | None = None) -> tuple[np.ndarray, dict]:
    """The cached array for these records and geometry, memory-mapped read-only.

    Built (once, under a lock) if missing and `build`; a cache made from other data or another
    geometry is refused by name rather than silently used.
    """
    path = Path(path)
    want = cache_meta(records, config, points_dir, fingerprint)
    want_key = {k: v for k, v in want.items() if k != "points_dir"}
    with _locked(path):
        meta = read_meta(path)
        if meta is None:
            if not build:
                raise DataError(f"preprocessing cache not found: {path} (run `ageest prepare`)")
            remove_temporaries([path, path.with_name(path.name + ".json")])  # a killed build's, we hold the lock
            arr, how = build_array(records, config, points_dir)
            skipped = _record_missing(path, records, how, config, points_dir)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, arr)
            # The array first, the metadata last: no metadata means no (or an unfinished) cache.
            write_json_atomic(path.with_name(path.name + ".json"),
                              {**want, "fallback": [r.name for r, (h, _) in zip(records, how) if h == "fallback"],
                               "skipped": skipped, **_detections(records, how, config),
                               "built_by_pid": os.getpid()})
            meta = read_meta(path)
        have_key = {k: meta.get(k) for k in want_key}
        if have_key != want_key:
            diff = [k for k in want_key if have_key[k] != want_key[k]]
            raise DataError(f"preprocessing cache {path} was built for other data or settings "
                            f"(differs in: {', '.join(diff)}); delete it or point --cache elsewhere")
    arr = np.load(path, mmap_mode="r")
    if arr.shape != (len(records), want["size"], want["size"], 3):
        raise DataError(f"preprocessing cache {path} is damaged (shape {arr.shape}); delete it")
    return arr, meta


def default_cache_path(records: Sequence[Record], config: Config, points_dir: Path | None = None,
                       fingerprint: Fingerprint | None = None) -> Path:
    """$AGEEST_CACHE_DIR (default ~/.cache/ageest)/TAG.npy, TAG naming the data (with alignment,
    the landmark files too: `points_dir`, default points/ beside the images) and the geometry."""
    root = Path(os.environ.get("AGEEST_CACHE_DIR") or Path.home() / ".cache" / "ageest")
    if config.align == "landmarks" and points_dir is None and records:
        points_dir = default_points_dir(records[0].path.parent)
    fingerprint = fingerprint or fold_fingerprint(list(records), config, points_dir)
    skip = "-skip" if config.on_no_face == "skip" and config.align != "none" and not config.align_fallback else ""
    template = template_key(config)
    shape = "" if template in (None, "eyes_mouth") else "-" + template.replace("@", "")
    tag = f"v{CACHE_VERSION}-{fingerprint.data}-{config.align}{shape}{'-fb' if config.align_fallback else ''}{skip}-{config.resize_size}"
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
          f"{len(meta.get('fallback', []))} unaligned by fallback, {len(meta.get('skipped', []))} skipped "
          "(no points to align on)")
    return 0
