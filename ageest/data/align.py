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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ageest.errors import DataError
from ageest.data.imageio import load_rgb
from ageest.data.landmarks import default_points_dir, find_pts, read_pts

LEFT_EYE = slice(27, 31)
RIGHT_EYE = slice(32, 36)
MOUTH = slice(48, 60)
# dlib's 5 points in FG-NET's 68: the outer and inner corners of the image-right eye, then of the
# image-left eye, then the base of the nose (dlib's shape_predictor_5_face_landmarks order).
DLIB5 = (32, 34, 27, 29, 41)

# Template: keypoint positions as fractions of the output side. Eye-mouth distance ~0.19 and
# eye distance 0.20 of the side (FG-NET's median mouth/eye-distance ratio is ~1.03) leave
# room for the chin (~1.7 eye distances below the eyes) and forehead plus some hair above.
TEMPLATE = np.array([[0.40, 0.44], [0.60, 0.44], [0.50, 0.635]])


@dataclass(frozen=True)
class Template:
    """Where face points land in a network's input, and how the crop is sampled.

    `sets`: the point sets it aligns on, best first, each a tuple of named points with their
    positions (x, y) as fractions of the side; alignment takes the first set the image's points
    give in full (`face_points`). Positions p are placed at (padding + p) / (1 + 2 padding) of the
    side. `of_crop`: the side is the network's crop (`image_size`), centred in the cached square
    as evaluation crops it; else the whole cached square (crop plus augmentation margin).
    `dlib_chip`: sampled as dlib's extract_image_chip samples a face chip (the chip's corner
    pixels on the corners of the template's box, halvings by a Gaussian pyramid first where the
    face is over twice the chip, black outside the photo), for networks trained on dlib's chips;
    else one bilinear warp with the photo's border replicated.
    """

    name: str
    sets: tuple[tuple[tuple[str, tuple[float, float]], ...], ...]
    padding: float = 0.0
    of_crop: bool = False
    dlib_chip: bool = False

    def target(self, names: tuple[str, ...]) -> np.ndarray:
        """(k, 2) positions of the named points, as fractions of the side, padding applied."""
        where = {n: p for s in self.sets for n, p in s}
        return (self.padding + np.array([where[n] for n in names], np.float64)) / (1 + 2 * self.padding)


# The three points every source gives (landmarks, MTCNN, the Haar fallback): ageest's own layout.
EYES_MOUTH = Template("eyes_mouth", ((("eye_l", tuple(TEMPLATE[0])), ("eye_r", tuple(TEMPLATE[1])),
                                      ("mouth", tuple(TEMPLATE[2]))),))
# dlib's face chip (get_face_chip_details, padding 0.2): its 5-point template, where the 68
# landmarks give those points; else the eye centres and mouth centre of dlib's 68-point mean face
# (eyes 36-41 and 42-47, mouth corners 48 and 54, averaged), the frame its 5 points share.
DLIB_CHIP = Template("dlib_chip", (
    (("eye_r_outer", (0.8595674595992, 0.2134981538014)), ("eye_r_inner", (0.6460604764104, 0.2289674387677)),
     ("eye_l_outer", (0.1205750620789, 0.2137274526848)), ("eye_l_inner", (0.3340850613712, 0.2290642403242)),
     ("nose_base", (0.4901123135679, 0.6277975316475))),
    (("eye_l", (0.2254918, 0.2159903)), ("eye_r", (0.7547580, 0.2159903)), ("mouth", (0.4901265, 0.7802330))),
), padding=0.2, of_crop=True, dlib_chip=True)
TEMPLATES = {t.name: t for t in (EYES_MOUTH, DLIB_CHIP)}


def face_points(pts) -> dict[str, np.ndarray]:
    """The named points an image's points give: 68 FG-NET landmarks give the eye centres (contour
    means), the mouth centre and dlib's 5; 5 points in MTCNN's order (or the detector's 3: eyes,
    mouth centre) give the eye centres and the mouth centre."""
    p = np.asarray(pts, dtype=np.float64)
    if p.shape == (68, 2):
        named = dict(zip(("eye_l", "eye_r", "mouth"), keypoints_from_landmarks(p)))
        named.update(zip(("eye_r_outer", "eye_r_inner", "eye_l_outer", "eye_l_inner", "nose_base"), p[list(DLIB5)]))
        return named
    if p.shape == (5, 2):
        p = keypoints_from_five(p)
    if p.shape != (3, 2):
        raise ValueError(f"expected 68, 5 or 3 points, got {p.shape}")
    return dict(zip(("eye_l", "eye_r", "mouth"), p))


def template_points(pts, template: Template) -> tuple[np.ndarray, np.ndarray]:
    """(source pixels, target fractions) of the first of the template's point sets that `pts` give."""
    named = face_points(pts)
    for s in template.sets:
        names = tuple(n for n, _ in s)
        if all(n in named for n in names):
            return np.stack([named[n] for n in names]), template.target(names)
    raise ValueError(f"the points given ({', '.join(named)}) hold none of template {template.name}'s point sets")


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


def crop_offset(size: int, crop: int) -> int:
    """Where evaluation's centre crop of `crop` px starts in a square of `size` px (as
    augment.center_crop places it: Python's half-to-even rounding)."""
    return int(round((size - crop) / 2.0))


def align_face(rgb_uint8, points, size: int = 224, template: Template = EYES_MOUTH,
               crop: int | None = None) -> np.ndarray:
    """Warp an (H, W, 3) or (H, W) uint8 image so its `points` (68 landmarks, 5 MTCNN points or
    the 3 keypoints) land on `template` in a (size, size, 3) uint8 square. `crop`: the network's
    crop inside that square, for a template placed in the crop (`of_crop`; default `size`).

    With EYES_MOUTH, pixels outside the photo replicate its border: FG-NET faces often touch the
    photo edge, and constant black bars would be strong artificial edges whose placement tracks
    the scan framing (and so photo era, and so age) -- a shortcut for a CNN. A dlib chip keeps
    dlib's black, what its network was trained on.
    """
    img = np.asarray(rgb_uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    src, frac = template_points(points, template)
    side = (crop or size) if template.of_crop else size
    dst = frac * side + (crop_offset(size, side) if template.of_crop else 0)
    if template.dlib_chip:
        return _dlib_chip(np.ascontiguousarray(img), src, dst, size, side, crop_offset(size, side))
    m = fit_similarity(src, dst)
    return cv2.warpAffine(np.ascontiguousarray(img), m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


_BINOMIAL = np.array([1, 4, 6, 4, 1], np.float32) / 16


def _pyramid_down(img: np.ndarray) -> np.ndarray:
    """dlib's pyramid_down<2>: a 5x5 binomial filter, every other pixel from the third on (pixel
    x of the result sits at the input's 2x + 2), truncated to whole grey levels."""
    blurred = cv2.sepFilter2D(img, -1, _BINOMIAL, _BINOMIAL, borderType=cv2.BORDER_REPLICATE)
    rows, cols = (img.shape[0] - 3) // 2, (img.shape[1] - 3) // 2
    return np.floor(blurred[2:2 + 2 * rows:2, 2:2 + 2 * cols:2])


def _dlib_chip(img: np.ndarray, src: np.ndarray, dst: np.ndarray, size: int, side: int, offset: int) -> np.ndarray:
    # dlib fits the similarity from chip to photo, then spreads the chip's `side` pixels over the
    # box of side*scale - 1 photo pixels centred where the chip's centre falls (its chip_details).
    m = fit_similarity(dst - offset, src)
    scale = float(np.hypot(*m[:, 0]))
    centre = m[:, :2] @ np.array([side / 2, side / 2]) + m[:, 2]
    lin = m[:, :2] * ((side * scale - 1) / max(side - 1, 1) / scale)  # photo px per chip px, rotated
    # Chip pixel j of the square (offset + i of the chip) -> photo: centre + lin @ (j - offset - (side-1)/2).
    shift = centre - lin @ np.full(2, offset + (side - 1) / 2)
    # dlib truncates where it converts back to bytes (each pyramid level, the chip): floor, not round.
    img = img.astype(np.float32)
    while np.hypot(*lin[:, 0]) > 2 and min(img.shape[:2]) > 16:  # dlib's pyramid: halve while over 2 px per chip px
        img = _pyramid_down(img)
        lin, shift = lin / 2, (shift - np.array([2.5, 1.5])) / 2
    out = cv2.warpAffine(img, np.hstack([lin, shift[:, None]]), (size, size),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return np.floor(out).astype(np.uint8)


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
