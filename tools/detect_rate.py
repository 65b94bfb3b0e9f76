"""How often `ageest predict`'s face detector finds a face, on a folder of images (e.g. FG-NET's).

For every image: OpenCV's Haar face detection exactly as `ageest predict` runs it
(`ageest.data.detect.detect_faces`). Prints the share of images with at least one face, the share of
those where the eye cascade located the eyes of the most confident face (else the average FG-NET
eye positions stand in), and, where a landmark file is found (`points/` beside the images, FG-NET's
layout), the share whose most confident face box holds both true eye centres: a face found on the
face, not elsewhere.

    python tools/detect_rate.py --images FGNET/images            # all 1002 images
    python tools/detect_rate.py --images FGNET/images --limit 20  # a quick look
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ageest.data.align import keypoints_from_landmarks
from ageest.data.detect import detect_faces
from ageest.data.imageio import load_rgb
from ageest.data.landmarks import default_points_dir, find_pts, read_pts

EXTENSIONS = {".jpg", ".jpeg", ".png"}


def inside(box, point) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, help="folder of images")
    ap.add_argument("--points", default=None, help="landmark folder (default: points/ beside the images)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images, sorted by name (0: all)")
    ap.add_argument("--json", default=None, help="also write the counts here")
    args = ap.parse_args()

    images = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in EXTENSIONS)
    if args.limit:
        images = images[:args.limit]
    if not images:
        raise SystemExit(f"{args.images}: no images")
    points = Path(args.points) if args.points else default_points_dir(Path(args.images))
    n = found = eyes = with_pts = on_face = 0
    t0 = time.perf_counter()
    for p in images:
        faces = detect_faces(load_rgb(p))
        n += 1
        pts = find_pts(points, p) if points.is_dir() else None
        with_pts += pts is not None
        if not faces:
            continue
        found += 1
        best = max(faces, key=lambda f: f.score)
        eyes += best.eyes_found
        if pts is not None:
            true_eyes = keypoints_from_landmarks(read_pts(pts))[:2]
            on_face += all(inside(best.box, e) for e in true_eyes)
    seconds = time.perf_counter() - t0
    result = {"images": n, "with_face": found, "face_rate": found / n,
              "eyes_located": eyes, "eyes_rate": eyes / found if found else float("nan"),
              "with_landmarks": with_pts, "on_true_face": on_face, "seconds": seconds}
    print(f"{n} images: a face found in {found} ({100 * found / n:.0f}%)")
    if found:
        print(f"  eyes located by the eye cascade in {eyes} of those ({100 * eyes / found:.0f}%)")
    if with_pts:
        print(f"  the most confident box holds both true eye centres in {on_face} of the {with_pts} images "
              f"with landmarks ({100 * on_face / with_pts:.0f}%)")
    print(f"  {seconds:.1f} s ({seconds / n * 1000:.0f} ms per image)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
