"""Write a preview grid of face images next to their landmark-aligned crops.

Alignment maps three keypoints (left-eye centre, right-eye centre, mouth centre; "left" means
image-left, i.e. the subject's right eye) onto a fixed template with a least-squares
similarity transform, so every crop is upright, centred and equally scaled.

FG-NET's 68-point scheme is NOT the iBUG/300-W one. Checked by plotting the numbers on the
real `.pts` files (consistent over all 1002)::

    0-14   jaw, image-left ear level -> chin (7) -> image-right
    15-20  image-right brow (outer, top x2, inner, bottom x2)
    21-26  image-left brow (same order)
    27-30  image-left eye contour (outer corner, top, inner corner, bottom); 31 its pupil
    32-35  image-right eye contour (same order); 36 its pupil
    37-47  nose (37/45 bridge top, 39/43 alae, 46/47 nostrils, 41 base); 67 nose tip
    48-59  outer lip (48 image-left corner, 51 top centre, 54 right corner, 57 bottom centre)
    60-65  inner lip; 66 mouth centre

Eye centres use the contour means (27-30, 32-35), not the pupils, which move with gaze.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ageest.errors import DataError
from ageest.data.fgnet import load_rgb
from ageest.data.landmarks import default_points_dir, find_pts, read_pts

LEFT_EYE = slice(27, 31)
RIGHT_EYE = slice(32, 36)
MOUTH = slice(48, 60)

# Template: keypoint positions as fractions of the output side. Eye-mouth distance ~0.19 and
# eye distance 0.20 of the side (FG-NET's median mouth/eye-distance ratio is ~1.03) leave
# room for the chin (~1.7 eye distances below the eyes) and forehead plus some hair above.
TEMPLATE = np.array([[0.40, 0.44], [0.60, 0.44], [0.50, 0.635]])


def keypoints_from_landmarks(pts68) -> np.ndarray:
    """(68, 2) FG-NET landmarks -> (3, 2) [left-eye centre, right-eye centre, mouth centre]."""
    p = np.asarray(pts68, dtype=np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {p.shape}")
    return np.stack([p[LEFT_EYE].mean(0), p[RIGHT_EYE].mean(0), p[MOUTH].mean(0)])


def keypoints_from_five(pts5) -> np.ndarray:
    """(5, 2) points in MTCNN's order (image-left eye, image-right eye, nose, image-left mouth
    corner, image-right mouth corner) -> (3, 2) [left eye, right eye, mouth centre]: the mouth
    centre is the mean of the two corners, as `ageest predict` takes it from a detected face."""
    p = np.asarray(pts5, dtype=np.float64)
    if p.shape != (5, 2):
        raise ValueError(f"expected (5, 2) points, got {p.shape}")
    return np.stack([p[0], p[1], (p[3] + p[4]) / 2])


def keypoints_from_points(pts) -> np.ndarray:
    """5 (MTCNN's order) or 68 (FG-NET's `.pts` order) points -> the (3, 2) alignment keypoints."""
    p = np.asarray(pts, dtype=np.float64)
    return keypoints_from_five(p) if len(p) == 5 else keypoints_from_landmarks(p)


def fit_similarity(src, dst) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) that
    maps (N, 2) `src` onto (N, 2) `dst` (Umeyama 1991). Returns the (2, 3) matrix A with
    dst ~= A[:, :2] @ src + A[:, 2]."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    var_s = (s_c**2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("source points are all identical")
    u, sig, vt = np.linalg.svd(d_c.T @ s_c / len(src))
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1  # the best orthogonal fit would be a reflection; force a rotation
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / var_s
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def align_face(rgb_uint8, keypoints, size: int = 224) -> np.ndarray:
    """Warp an (H, W, 3) or (H, W) uint8 image so `keypoints` (3, 2) land on TEMPLATE * size.

    Returns (size, size, 3) uint8. Pixels outside the photo replicate its border: FG-NET faces
    often touch the photo edge, and constant black bars would be strong artificial edges whose
    placement tracks the scan framing (and so photo era, and so age) -- a shortcut for a CNN.
    """
    img = np.asarray(rgb_uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    m = fit_similarity(keypoints, TEMPLATE * size)
    return cv2.warpAffine(np.ascontiguousarray(img), m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def align_image(path_or_array, pts_path, size: int = 224) -> np.ndarray:
    """Load an image (path or array) and its `.pts`, return the (size, size, 3) aligned crop."""
    img = load_rgb(path_or_array) if isinstance(path_or_array, (str, Path)) else path_or_array
    return align_face(img, keypoints_from_landmarks(read_pts(pts_path)), size)


def _letterbox(img: np.ndarray, size: int) -> tuple[np.ndarray, float, np.ndarray]:
    """Fit (H, W, 3) into a grey (size, size, 3) square; returns it, the scale and offset."""
    h, w = img.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    out = np.full((size, size, 3), 128, np.uint8)
    off = np.array([(size - nw) // 2, (size - nh) // 2])
    out[off[1]:off[1] + nh, off[0]:off[0] + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return out, s, off


def make_alignment_preview(images_dir, out_png, n: int = 6, size: int = 160, seed: int = 0,
                           points_dir=None) -> Path:
    """Write a PNG of `n` random images (letterboxed, keypoints marked) each beside its aligned
    crop, three pairs per row. `points_dir` defaults to the sibling `points/` folder."""
    images_dir = Path(images_dir)
    points_dir = Path(points_dir) if points_dir else default_points_dir(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: images folder not found")
    if not points_dir.is_dir():
        raise DataError(f"{points_dir}: points folder not found")
    exts = {".jpg", ".jpeg", ".png"}
    pairs = [(p, q) for p in sorted(images_dir.iterdir())
             if p.suffix.lower() in exts and (q := find_pts(points_dir, p)) is not None]
    if not pairs:
        raise DataError(f"{images_dir}: no images with a matching .pts in {points_dir}")
    rng = np.random.default_rng(seed)
    chosen = [pairs[i] for i in sorted(rng.choice(len(pairs), min(n, len(pairs)), replace=False))]
    tiles = []
    for img_path, pts_path in chosen:
        img = load_rgb(img_path)
        kp = keypoints_from_landmarks(read_pts(pts_path))
        box, s, off = _letterbox(img, size)
        for x, y in kp * s + off:
            cv2.circle(box, (int(round(x)), int(round(y))), 2, (255, 0, 0), -1)
        tiles.append(np.hstack([box, align_face(img, kp, size)]))
    cols = 3
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (-len(tiles) % cols)
    grid = np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out_png)
    return out_png


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images_dir", help="folder of face images (e.g. FGNET/images)")
    parser.add_argument("--points", metavar="DIR", default=None,
                        help="folder of .pts files (default: sibling 'points/' folder)")
    parser.add_argument("--out", metavar="PNG", default="alignment_preview.png",
                        help="output PNG (default: %(default)s)")
    parser.add_argument("-n", type=int, default=6, help="number of images (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="which images to pick (default: 0)")


def run(args: argparse.Namespace) -> int:
    out = make_alignment_preview(args.images_dir, args.out, n=args.n, seed=args.seed,
                                 points_dir=args.points)
    print(out)
    return 0
