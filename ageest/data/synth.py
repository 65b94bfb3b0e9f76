"""Generate a synthetic FG-NET look-alike data set (images + 68-point landmarks).

The faces carry a real, learnable age signal and nuisance variation that does not:

* age: head proportions (children: big cranium, eyes low on the head, short lower face, big
  eyes, small nose/mouth/jaw), forehead/eye/mouth wrinkles from the late twenties, hair that
  darkens through childhood and greys from a per-subject onset, pinker skin in children;
* nuisance: identity (face shape, skin/hair/iris colour, hair style), pose (rotation, scale,
  off-centre placement with neck and shoulders), expression, lighting, background,
  greyscale vs colour, JPEG quality, sensor noise.

Layout and names follow FG-NET exactly: `images/NNNAMM[a|b].JPG` and `points/nnnamm[a|b].pts`
in FG-NET's own 68-point numbering (see ageest.data.align). Output is a pure function of the seed:
every image draws from its own generator keyed by (seed, subject, photo), so the same seed
gives byte-identical files whatever the number of worker processes. Existing files with the
same names are overwritten; other files in OUTDIR are left alone.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ageest.errors import DataError
from ageest.data.landmarks import default_points_dir, write_pts

# Target age density, per year of age, shaped like FG-NET's (mean ~16, few over 50).
_AGE_DENSITY = np.array([3.8] * 20 + [1.9] * 10 + [1.1] * 10 + [0.7] * 10 + [0.2] * 20)


@dataclass(frozen=True)
class _Subject:
    skin: np.ndarray  # (3,) RGB 0-255
    hair: np.ndarray
    iris: np.ndarray
    shape: np.ndarray  # (8,) multiplicative identity factors on face proportions
    jaw_exp: float
    grey_onset: float  # age (years) where greying starts
    wrinkle: float
    long_hair: bool
    hair_volume: float


def _subject(rng: np.random.Generator) -> _Subject:
    t = rng.beta(1.5, 3.0)
    skin = (1 - t) * np.array([238, 200, 178]) + t * np.array([125, 84, 62])
    hairs = np.array([[35, 25, 20], [70, 45, 30], [110, 75, 45], [160, 120, 70], [120, 55, 30]])
    hair = hairs[rng.choice(5, p=[0.35, 0.3, 0.18, 0.1, 0.07])] * rng.uniform(0.85, 1.15, 3)
    irises = np.array([[70, 45, 25], [50, 90, 140], [80, 110, 70], [110, 80, 40]])
    return _Subject(skin=skin * rng.uniform(0.95, 1.05, 3), hair=hair,
                    iris=irises[rng.choice(4, p=[0.55, 0.2, 0.1, 0.15])],
                    shape=np.clip(rng.normal(1, 0.05, 8), 0.88, 1.12),
                    jaw_exp=rng.uniform(0.8, 1.2), grey_onset=rng.normal(42, 7),
                    wrinkle=rng.uniform(0.7, 1.3), long_hair=bool(rng.random() < 0.45),
                    hair_volume=rng.uniform(1.03, 1.14))


def _geometry(age: float, sub: _Subject, rng: np.random.Generator) -> dict:
    """Face proportions in canonical units: eye distance 1, origin between the eyes, y down."""
    g = 1 - np.exp(-age / 5.0)  # facial growth: 0 at birth, ~0.97 at 18

    def lerp(child, adult, i=None):
        v = child + (adult - child) * g
        return v * (sub.shape[i] if i is not None else 1) * rng.normal(1, 0.015)

    return dict(
        ew=lerp(0.25, 0.205, 0), eh_up=lerp(0.135, 0.09), eh_lo=lerp(0.09, 0.06),
        brow_y=lerp(0.30, 0.31, 1), brow_th=lerp(0.035, 0.07), brow_a=lerp(0.35, 0.85),
        nose_len=lerp(0.52, 0.78, 2), nose_hw=lerp(0.22, 0.29, 3),
        mouth_y=lerp(0.88, 1.10, 4), mouth_hw=lerp(0.29, 0.42, 5),
        chin=lerp(1.45, 1.85, 6), wf=lerp(1.13, 1.06, 7), wc=lerp(1.34, 1.12, 7),
        crown=lerp(2.35, 1.75), hairline=lerp(1.15, 0.85), neck=lerp(0.5, 0.62),
        g=g, age=age,
    )


def _landmarks(f: dict, sub: _Subject, smile: float, gap: float) -> np.ndarray:
    """The 68 canonical landmarks (FG-NET numbering) for geometry `f`."""
    p = np.zeros((68, 2))
    a = np.linspace(0, np.pi, 15)
    p[0:15] = np.c_[-f["wf"] * np.cos(a), f["chin"] * np.sin(a) ** sub.jaw_exp]
    by, bt, bl = -f["brow_y"], f["brow_th"], 0.58
    for start, side in ((15, 1), (21, -1)):  # 15-20 image-right brow, 21-26 image-left
        xo, xi = side * (0.5 + bl / 2 + 0.05), side * 0.2
        xs = [xo, side * 0.68, side * 0.4, xi, side * 0.4, side * 0.68]
        ys = [by + 0.02, by - bt * 0.9, by - bt * 1.1, by - bt * 0.2, by + bt * 0.1, by]
        p[start:start + 6] = np.c_[xs, ys]
    for start, cx in ((27, -0.5), (32, 0.5)):  # outer, top, inner, bottom, pupil
        out = cx + np.sign(cx) * f["ew"]
        inn = cx - np.sign(cx) * f["ew"]
        p[start:start + 5] = [[out, 0.01], [cx, -f["eh_up"]], [inn, 0.0], [cx, f["eh_lo"]], [cx, 0]]
    nl, nw = f["nose_len"], f["nose_hw"]
    p[37], p[45] = [-0.16, 0.03], [0.16, 0.03]
    p[38], p[44] = [-0.5 * nw, 0.45 * nl], [0.5 * nw, 0.45 * nl]
    p[39], p[43] = [-nw, 0.85 * nl], [nw, 0.85 * nl]
    p[46], p[47] = [-0.5 * nw, 0.93 * nl], [0.5 * nw, 0.93 * nl]
    p[40], p[42] = [-0.45 * nw, 1.0 * nl], [0.45 * nw, 1.0 * nl]
    p[41], p[67] = [0, 1.02 * nl], [0, 0.86 * nl]
    my, mw = f["mouth_y"], f["mouth_hw"]
    ul, ll, cy = 0.085 * (0.8 + 0.2 * f["g"]), 0.1, my - smile * 0.06
    up = [[-mw, cy], [-0.55 * mw, my - ul * 0.8], [-0.2 * mw, my - ul], [0, my - ul * 0.8],
          [0.2 * mw, my - ul], [0.55 * mw, my - ul * 0.8], [mw, cy]]
    lo = [[0.55 * mw, my + ll * 0.8 + gap], [0.2 * mw, my + ll + gap], [0, my + ll + gap],
          [-0.2 * mw, my + ll + gap], [-0.55 * mw, my + ll * 0.8 + gap]]
    p[48:60] = up + lo
    p[60], p[62] = [-0.8 * mw, cy + 0.005], [0.8 * mw, cy + 0.005]
    p[61], p[64] = [0, my + gap], [0, my]
    p[63], p[65] = [0.4 * mw, my], [-0.4 * mw, my]
    p[66] = [0, my + gap / 2]
    return p


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; large sigmas run at reduced resolution (shading maps are smooth)."""
    if sigma < 0.3:
        return img
    f = max(1, int(sigma / 2))
    if f == 1:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _ip(pts) -> np.ndarray:
    """Float pixel points -> int32 points with 4 fractional bits (cv2 drawing, shift=4)."""
    return np.round(np.asarray(pts, float) * 16).astype(np.int32).reshape(-1, 1, 2)


def _col(c) -> tuple:
    return tuple(float(v) for v in np.clip(c, 0, 255))


def _poly(img, pts, colour, closed=True, thick=-1):
    if thick < 0:
        cv2.fillPoly(img, [_ip(pts)], colour, cv2.LINE_AA, 4)
    else:
        cv2.polylines(img, [_ip(pts)], closed, colour, max(1, int(round(thick))), cv2.LINE_AA, 4)


def _ellipse(img, c, axes, colour, thick=-1):
    cv2.ellipse(img, tuple(int(round(v * 16)) for v in c),
                tuple(max(1, int(round(v * 16))) for v in axes), 0, 0, 360, colour, thick, cv2.LINE_AA, 4)


def _arc(c, ax, ay, a0, a1, n=24):
    t = np.linspace(a0, a1, n)
    return np.c_[c[0] + ax * np.cos(t), c[1] + ay * np.sin(t)]


def _render_person(img: np.ndarray, sub: _Subject, age: float, k: float, p0, theta: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Draw one head-and-shoulders person onto float32 RGB `img` (H, W, 3) in place.

    k: pixels per eye distance; p0: (x, y) image pixel of the point between the eyes;
    theta: in-plane rotation in degrees (counter-clockwise on screen) about p0.
    The person is drawn upright on its own small canvas, then rotated into place, so the
    returned (68, 2) image-pixel landmarks go through exactly the same transform.
    """
    f = _geometry(age, sub, rng)
    smile = rng.uniform(0, 1) if rng.random() < 0.5 else 0.0
    gap = rng.uniform(0.02, 0.06) if rng.random() < 0.2 else 0.0
    lm = _landmarks(f, sub, smile, gap)
    wc, wf, crown, chin, g = f["wc"], f["wf"], f["crown"], f["chin"], f["g"]
    top = crown * 1.2 + 0.2
    cw, ch = int(6 * k) + 2, int((top + chin + 4.2) * k) + 2
    o = np.array([3 * k, top * k])
    P = lambda q: o + k * np.asarray(q, float)  # canonical units -> canvas pixels  # noqa: E731
    rgb = np.zeros((ch, cw, 3), np.uint8)
    alpha = np.zeros((ch, cw), np.uint8)

    grey = float(np.clip((age - sub.grey_onset) / 22, 0, 0.9))
    hair = np.clip((1 - grey) * (sub.hair * (1 + 0.6 * (1 - g)) + 25 * (1 - g))
                   + grey * np.array([205, 203, 198]), 0, 255)
    skin = np.clip(sub.skin * (1 + np.array([0.06, -0.01, 0.0]) * (1 - g)), 0, 255)
    r = np.sqrt(max(0.0, 1 - (wf / wc) ** 2))
    hc = crown / (1 + r)  # cranium ellipse: half-height hc, centre yc, width wf at eye level
    yc = -r * hc

    def shape(draw, colour):
        draw(rgb, _col(colour))
        draw(alpha, 255)

    shape(lambda m, c: _ellipse(m, P([0, chin + 2.4]), (k * 2.7, k * 1.7), c), rng.uniform(30, 220, 3))
    shape(lambda m, c: _poly(m, P([[-f["neck"], chin - 0.6], [f["neck"], chin - 0.6],
                                    [f["neck"] * 1.1, chin + 1.0], [-f["neck"] * 1.1, chin + 1.0]]), c), skin * 0.8)
    if sub.long_hair and age >= 3:
        length = chin + (0.2 if age < 10 else 0.6)
        back = np.r_[_arc((0, yc), wc * 1.12, hc * 1.1, np.pi, 2 * np.pi),
                     _arc((0, length - 0.3), wc * 1.15, 0.3, 0, np.pi)]
        shape(lambda m, c: _poly(m, P(back), c), hair * 0.8)
    for side in (-1, 1):
        shape(lambda m, c: _ellipse(m, P([side * (wf - 0.03), 0.38]), (k * 0.15, k * 0.33), c), skin * 0.9)
    a = np.linspace(0, np.pi, 40)
    outline = np.r_[_arc((0, yc), wc, hc, np.pi, 2 * np.pi, 48), np.c_[wf * np.cos(a), chin * np.sin(a) ** sub.jaw_exp]]
    outline = outline[(outline[:, 1] <= 0) | (np.arange(len(outline)) >= 48)]
    shape(lambda m, c: _poly(m, P(outline), c), skin)

    # eyes, in a small ROI each: sclera, iris clipped to the opening, dark upper lid
    for s0 in (27, 32):
        c = P(lm[s0 + 4])
        x0, y0 = (c - k * 0.4).astype(int)
        x1, y1 = (c + k * 0.4).astype(int) + 1
        roi = rgb[y0:y1, x0:x1]
        cl = c - [x0, y0]
        eye = np.r_[_arc(cl, k * f["ew"], k * f["eh_up"], np.pi, 2 * np.pi), _arc(cl, k * f["ew"], k * f["eh_lo"], 0, np.pi)]
        m = np.zeros(roi.shape[:2], np.float32)
        _poly(m, eye, 1.0)
        layer = np.empty(roi.shape, np.uint8)
        layer[:] = (232, 228, 222)
        gz = cl + k * rng.normal(0, 0.02, 2)
        ir = k * f["eh_up"] * (1.0 + 0.15 * (1 - g))
        _ellipse(layer, gz, (ir, ir), _col(sub.iris))
        _ellipse(layer, gz, (ir * 0.45, ir * 0.45), (15, 12, 12))
        roi[:] = (roi * (1 - m[..., None]) + layer * m[..., None]).astype(np.uint8)
        _poly(roi, eye[:24], (30, 22, 20), closed=False, thick=k * 0.035)
    brow = np.clip(hair * 0.55 * (1 - 0.5 * grey) + 30 * grey, 0, 255)
    brow = f["brow_a"] * brow + (1 - f["brow_a"]) * skin  # brows lie on skin: pre-blend
    for s0 in (15, 21):
        _poly(rgb, P(lm[s0:s0 + 6]), _col(brow))
    _poly(rgb, P(lm[48:60]), _col(skin * np.array([0.95, 0.62, 0.62]) + np.array([15, 0, 5])))
    if gap > 0:
        _poly(rgb, P(lm[[60, 65, 64, 63, 62, 61]]), (60, 25, 25))
    _poly(rgb, P(lm[[48, 65, 64, 63, 54]]), (90, 35, 35), closed=False, thick=k * 0.025)
    for i in (46, 47):
        _ellipse(rgb, P(lm[i]), (k * 0.06, k * 0.035), _col(skin * 0.35))

    # shading of the head region (log-brightness): dark eye sockets, nose sides and underside,
    # lit forehead, cheeks and nose bridge -- the light/dark pattern Haar detectors key on
    hx0, hy0 = P([-wc * 1.2, -crown - 0.1]).astype(int)
    hx1, hy1 = P([wc * 1.2, chin + 0.5]).astype(int)
    hx0, hy0 = max(hx0, 0), max(hy0, 0)
    Q = lambda q: P(q) - [hx0, hy0]  # noqa: E731
    hh, hw = hy1 - hy0, hx1 - hx0
    sh = np.zeros((hh, hw), np.float32)
    for cx in (-0.5, 0.5):
        _ellipse(sh, Q([cx, -0.06]), (k * 0.36, k * 0.22), -0.38)
        _ellipse(sh, Q([cx * 1.25, 0.55]), (k * 0.26, k * 0.2), 0.08)
    _ellipse(sh, Q([0, -0.7]), (k * 0.65, k * 0.28), 0.1)
    nl = f["nose_len"]
    _ellipse(sh, Q([0, 0.35 * nl]), (k * 0.07, k * 0.3 * nl), 0.12)
    for cx in (-1, 1):
        _ellipse(sh, Q([cx * 0.17, 0.55 * nl]), (k * 0.05, k * 0.32 * nl), -0.15)
    _ellipse(sh, Q([0, nl * 1.06]), (k * 0.22, k * 0.05), -0.35)
    _ellipse(sh, Q([0, f["mouth_y"] + 0.2]), (k * 0.22, k * 0.05), -0.2)
    sh = _blur(sh, k * 0.06)
    face_m = np.zeros((hh, hw), np.float32)
    _poly(face_m, Q(outline), 1.0)
    sh += 0.28 * (_blur(face_m, k * 0.25) - 1)  # falls off towards the face outline
    wk = float(np.clip((age - 27) / 35, 0, 1.0)) * sub.wrinkle  # wrinkles from the late twenties
    if wk > 0:
        wr = np.zeros((hh, hw), np.float32)
        t = k * 0.02
        for i, y in enumerate((-0.5, -0.68, -0.86)):
            if y > -f["hairline"] + 0.1:
                xs = np.linspace(-0.5 + 0.08 * i, 0.5 - 0.08 * i, 12)
                _poly(wr, Q(np.c_[xs, y - 0.06 * (1 - (2 * xs) ** 2)]), 1.0, False, t)
        my, mw = f["mouth_y"], f["mouth_hw"]
        for s in (-1, 1):
            ex = s * (0.5 + f["ew"] + 0.05)
            for dy in (-0.08, 0.0, 0.08):
                _poly(wr, Q([[ex, dy], [ex + s * 0.18, dy * 2.2]]), 1.0, False, t)
            _poly(wr, Q([[s * f["nose_hw"] * 1.05, nl * 0.85], [s * (mw + 0.1), my - 0.05],
                         [s * (mw + 0.08), my + 0.15]]), 1.0, False, t * 1.5)
            _poly(wr, Q(_arc((s * 0.5, 0.06), 0.2, 0.1, 0.3, np.pi - 0.3, 8)), 1.0, False, t)
            if wk > 0.6:
                _poly(wr, Q([[s * mw, my + 0.05], [s * (mw + 0.05), my + 0.35]]), 1.0, False, t)
        sh -= 0.45 * min(wk, 1.0) * _blur(wr, k * 0.008) * face_m
    head = rgb[hy0:hy1, hx0:hx1]
    head_f = head * np.exp(sh)[..., None]

    # hair cap over the cranium, minus a rounded hairline region; textured by noise
    hv = 1 + (sub.hair_volume - 1) * min(1.0, age / 3)
    cap = np.zeros((hh, hw), np.float32)
    _ellipse(cap, Q([0, yc - 0.04]), (k * wc * hv, k * hc * hv), 1.0)
    _ellipse(cap, Q([0, 0.25]), (k * wf * 0.9, k * (f["hairline"] + 0.25)), 0.0)
    cap[max(0, int(Q([0, 0.3])[1])):] = 0
    cap *= 0.35 + 0.6 * min(1.0, age / 3)  # babies have thin hair
    tex = cv2.resize(rng.normal(1, 0.12, (max(2, hh // 6), max(2, hw // 6))).astype(np.float32), (hw, hh))
    head[:] = np.clip(head_f * (1 - cap[..., None]) + cap[..., None] * hair * tex[..., None], 0, 255).astype(np.uint8)
    al = alpha[hy0:hy1, hx0:hx1]
    al[:] = np.maximum(al, (cap * 255).astype(np.uint8))

    # rotate about the eye midpoint into place; warp only the image region it covers
    m = cv2.getRotationMatrix2D((float(o[0]), float(o[1])), theta, 1.0)
    m[:, 2] += np.asarray(p0, float) - o
    corners = np.array([[0, 0], [cw, 0], [0, ch], [cw, ch]], float) @ m[:, :2].T + m[:, 2]
    h, w = img.shape[:2]
    bx0, by0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    bx1, by1 = np.minimum(np.ceil(corners.max(0)).astype(int), [w, h])
    if bx1 > bx0 and by1 > by0:
        mr = m.copy()
        mr[:, 2] -= [bx0, by0]
        size = (int(bx1 - bx0), int(by1 - by0))
        rgb_w = cv2.warpAffine(rgb, mr, size, flags=cv2.INTER_LINEAR).astype(np.float32)
        a_w = cv2.warpAffine(alpha, mr, size, flags=cv2.INTER_LINEAR)[..., None].astype(np.float32) / 255
        dst = img[by0:by1, bx0:bx1]
        dst[:] = dst * (1 - a_w) + rgb_w * a_w
    return P(lm) @ m[:, :2].T + m[:, 2]


def _background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth coloured backdrop with a few blurred blocks of clutter: (h, w, 3) float32."""
    c0, c1 = rng.uniform(40, 230, 3), rng.uniform(40, 230, 3)
    vertical = rng.random() < 0.5
    t = np.linspace(0, 1, h if vertical else w, dtype=np.float32)
    grad = (c0 + (c1 - c0) * t[:, None]).astype(np.float32)
    img = np.ascontiguousarray(np.broadcast_to(grad[:, None] if vertical else grad[None], (h, w, 3)))
    for _ in range(rng.integers(0, 5)):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + rng.integers(20, w)), int(y0 + rng.integers(20, h))),
                      _col(rng.uniform(30, 230, 3)), -1)
    return _blur(img, rng.uniform(1, 6))


def _finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photo-level lighting gradient, colour cast, exposure and sensor noise -> uint8."""
    h, w = img.shape[:2]
    gx = rng.uniform(-0.3, 0.3) * (np.arange(w, dtype=np.float32) / w - 0.5)
    gy = rng.uniform(-0.25, 0.25) * (np.arange(h, dtype=np.float32) / h - 0.5)
    light = (1 + gy[:, None] + gx[None, :])[..., None]
    img = img * light * (rng.uniform(0.8, 1.12) * rng.uniform(0.93, 1.07, 3)).astype(np.float32)
    img += (rng.uniform(1.0, 4.0) * rng.standard_normal((h, w, 1), dtype=np.float32))
    return np.clip(img, 0, 255).astype(np.uint8)


def _render_one(seed: int, subject: int, photo: int, age: int) -> tuple[np.ndarray, np.ndarray, str]:
    """One FG-NET-like portrait: (RGB or grey uint8 image, (68, 2) landmarks, PIL mode)."""
    sub = _subject(np.random.default_rng([seed, subject]))
    rng = np.random.default_rng([seed, subject, photo, 1])
    w, h = (int(v) for v in rng.integers(300, 641, 2))
    k = rng.uniform(0.42, 0.7) * min(w, h) / 3.7
    x = np.clip(w / 2 + rng.uniform(-0.2, 0.2) * w, 1.35 * k, w - 1.35 * k)
    lo, hi = max(2.0 * k, 0.3 * h), h - 1.95 * k
    y = rng.uniform(lo, hi) if hi > lo else h / 2
    img = _background(w, h, rng)
    lm = _render_person(img, sub, age, k, (x, y), rng.normal(0, 6), rng)
    out = _finish(img, rng)
    u = rng.random()
    if u < 0.2:  # true single-channel JPEG, as many FG-NET scans are
        return cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), lm, "L"
    if u < 0.3:  # grey photo stored as three equal channels
        return np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2), lm, "RGB"
    return out, lm, "RGB"


def synthetic_plan(seed: int = 0, n_subjects: int = 82) -> list[tuple[int, int, str]]:
    """(subject 1.., age in years, '' / 'a' / 'b') for every image, without drawing anything.

    Per subject: 6-18 photos (FG-NET: 6-18, mean ~12) at ages up to an oldest age of 12-69,
    drawn from an FG-NET-like density (most under 20); at most two photos share an age.
    """
    plan = []
    for s in range(1, n_subjects + 1):
        rng = np.random.default_rng([seed, s, 0])
        n = int(np.clip(round(rng.normal(12.8, 2.6)), 6, 18))
        oldest = int(12 + 57 * rng.beta(1.2, 1.8))
        dens = _AGE_DENSITY[: oldest + 1] / _AGE_DENSITY[: oldest + 1].sum()
        ages = [oldest]
        while len(ages) < n:
            a = int(rng.choice(oldest + 1, p=dens))
            # a second photo at the same age is rare (FG-NET: 14 such pairs in 1002 images)
            if a not in ages or (ages.count(a) < 2 and rng.random() < 0.05):
                ages.append(a)
        for a in sorted(set(ages)):
            c = ages.count(a)
            plan += [(s, a, "ab"[i] if c == 2 else "") for i in range(c)]
    return plan


def _write_one(job) -> str:
    outdir, seed, photo, (s, age, suffix) = job
    img, lm, mode = _render_one(seed, s, photo, age)
    name = f"{s:03d}A{age:02d}{suffix}"
    images = Path(outdir) / "images"
    path = images / f"{name}.JPG"
    quality = int(np.random.default_rng([seed, s, photo, 2]).integers(75, 96))
    Image.fromarray(img, mode=mode).save(path, quality=quality)
    write_pts(default_points_dir(images) / f"{name.lower()}.pts", lm)
    return str(path)


def make_synthetic(outdir, seed: int = 0, n_subjects: int = 82, workers: int | None = None) -> list[Path]:
    """Write the synthetic set under `outdir` (images/, points/); returns the image paths.

    ~12 images per subject (~1000 for 82). `workers` processes (default: CPU count, max 8)
    share the work; the files do not depend on it.
    """
    outdir = Path(outdir)
    try:
        (outdir / "images").mkdir(parents=True, exist_ok=True)
        default_points_dir(outdir / "images").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{outdir}: cannot create output folders ({e.strerror})") from None
    plan = synthetic_plan(seed, n_subjects)
    jobs = [(str(outdir), seed, i, item) for i, item in enumerate(plan)]
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(jobs) < 40:
        paths = [_write_one(j) for j in jobs]
    else:
        # spawn, not fork: forking a process whose OpenCV thread pool is live can deadlock the
        # children; one OpenCV thread per worker so the workers don't oversubscribe the cores
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, ctx, initializer=cv2.setNumThreads, initargs=(1,)) as ex:
            paths = list(ex.map(_write_one, jobs, chunksize=16))
    return [Path(p) for p in paths]


def write_manifest_layout(images_dir: str | Path, manifest: str | Path) -> Path:
    """The FG-NET-layout data of `images_dir` (and points/ beside it) copied under another layout
    and names, listed in the table `manifest` (image, age, subject, points), written in its folder:
    faces/person-NNN/<99 - age><x|y|z>.jpeg (names sort against age order; same-age photos keep
    their order), landmark files marks/KKKK.pts, subjects named person-NNN (so their ids are FG-NET's:
    1..N in sorted order), rows in reverse order (row order is free). Returns the manifest path."""
    from ageest.data.fgnet import scan_images

    images_dir, manifest = Path(images_dir), Path(manifest)
    dest = manifest.parent
    rows = []
    for k, r in enumerate(scan_images(images_dir)):
        image = f"faces/person-{r.subject:03d}/{99 - r.age:02d}{'xyz'[' ab'.index(r.suffix or ' ')]}.jpeg"
        pts = f"marks/{k:04d}.pts"
        for src, dst in ((r.path, image), (default_points_dir(images_dir) / f"{r.path.stem.lower()}.pts", pts)):
            (dest / dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / dst)
        rows.append(f"{image}\t{r.age}\tperson-{r.subject:03d}\t{pts}")
    manifest.write_text("\n".join(["image\tage\tsubject\tpoints", *reversed(rows)]) + "\n")
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outdir", help="output folder (gets images/ and points/); refused where they hold files")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--subjects", type=int, default=82, help="number of subjects (default: %(default)s)")
    parser.add_argument("--manifest", default=None, metavar="NAME.tsv",
                        help="write the data under another layout and names (a folder per person), listed in "
                        "the manifest OUTDIR/NAME.tsv, instead of FG-NET's images/ and points/")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into folders that already hold files (same names are replaced, others stay)")


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.subjects <= 999:
        raise DataError(f"--subjects must be between 1 and 999 (FG-NET names use 3 digits), got {args.subjects}")
    out = Path(args.outdir)
    # Synthetic faces written into a real data set would overwrite some files and mix with the rest.
    targets = [out / "faces", out / args.manifest] if args.manifest else [out / "images", out / "points"]
    full = [t for t in targets if t.is_file() or (t.is_dir() and any(t.iterdir()))]
    if full and not getattr(args, "overwrite", False):
        raise DataError(f"{full[0]} already holds files: ageest synth writes a data set of its own; give an empty "
                        "or new folder, or --overwrite to write over it")
    if args.manifest:
        if Path(args.manifest).name != args.manifest or not args.manifest.endswith(".tsv"):
            raise DataError(f"--manifest {args.manifest}: a file name ending in .tsv (it is written in {args.outdir})")
        Path(args.outdir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.outdir) as tmp:
            paths = make_synthetic(tmp, seed=args.seed, n_subjects=args.subjects)
            manifest = write_manifest_layout(Path(tmp) / "images", Path(args.outdir) / args.manifest)
        print(f"wrote {len(paths)} images under {Path(args.outdir) / 'faces'}, listed in {manifest}")
        return 0
    paths = make_synthetic(args.outdir, seed=args.seed, n_subjects=args.subjects)
    print(f"wrote {len(paths)} images to {Path(args.outdir) / 'images'}")
    return 0
