"""Age of each face in photos, with a fold's model.pt; writes an annotated copy of each photo."""

from __future__ import annotations

import argparse
import pickle
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ageest.pipeline.augment import center_crop, normalize
from ageest.pipeline.cache import square_resize
from ageest.config import Config, field_names, from_dict
from ageest.train.devices import resolve_device
from ageest.errors import AgeestError, DataError, first_line
from ageest.data.imageio import load_rgb
from ageest.data.imageio import save_bgr
from ageest.nn.losses import Predict, loss_spec
from ageest.nn.backbones import backbone
from ageest.nn.model import build_model


@dataclass(frozen=True)
class Estimate:
    box: tuple[int, int, int, int]  # x, y, w, h in the photo (the whole photo when not detected)
    age: float  # predicted age, years: the expected age (CORAL: thresholds passed, see ageest.nn.losses)
    std: float  # spread of the prediction, years


@dataclass(frozen=True)
class FoldModel:
    """A fold's model.pt, ready to score faces."""

    net: torch.nn.Module  # in eval mode, on the device, with its loss's head
    config: Config  # the fold's training config: image sizes, alignment, ages
    predict: Predict  # the loss's (outputs, ages) -> (age, spread): the one the fold was scored with


def load_model(path: str | Path, device: torch.device) -> FoldModel:
    """A fold's model.pt -> FoldModel."""
    p = Path(path)
    if not p.is_file():
        raise AgeestError(f"model file not found: {p}")
    try:
        # Tensors and plain data only: a model file never runs code (a crafted pickle is refused).
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise AgeestError(f"{p} holds more than tensors and plain data: refused unread (ageest never runs "
                          "code from a model file; model.pt files ageest writes hold none)") from None
    except Exception as e:
        raise AgeestError(f"{p} is not an ageest model file ({type(e).__name__}: {first_line(e)[:200]})") from None
    try:
        # Keys ageest no longer has (align_margin, never read) do not change how a model predicts.
        config = from_dict({k: v for k, v in ck["config"].items() if k in field_names()})
        spec = loss_spec(ck["loss"])
        model = build_model(config.arch, config.num_classes, "none", spec.head)
        model.load_state_dict(ck["model"])  # damaged or mismatched weights fail here, one line too
    except AgeestError:
        raise
    except Exception as e:
        raise AgeestError(f"{p} is not an ageest model file ({type(e).__name__}: "
                          f"{first_line(e)[:200]})") from None
    return FoldModel(model.to(device).eval(), config, spec.predict)


def face_views(rgb: np.ndarray, config: Config, detect: bool) -> list[tuple[tuple, np.ndarray]]:
    """(box, S x S view) per face, prepared exactly as training prepared its images: detected
    faces aligned on the network's own template, or, without detection, the whole photo (an
    aligned crop already, or a model trained on whole, unaligned photos)."""
    size = config.resize_size
    if not detect:
        h, w = rgb.shape[:2]
        return [((0, 0, w, h), square_resize(rgb, size))]
    from ageest.data.align import align_face
    from ageest.data.detect import detect_faces
    from ageest.pipeline.cache import template_of

    return [(tuple(int(v) for v in f.box), align_face(rgb, f.keypoints, size, template_of(config), config.image_size))
            for f in detect_faces(rgb)]


@torch.no_grad()
def predict_image(fold: FoldModel, rgb: np.ndarray, device: torch.device, detect: bool = True) -> list[Estimate]:
    c = fold.config
    views = face_views(rgb, c, detect)
    if not views:
        return []
    x = torch.from_numpy(np.stack([v for _, v in views])).to(device)
    x = normalize(center_crop(x, c.image_size), backbone(c.arch).norm)
    mean, std = fold.predict(fold.net(x), c.age_grid(device))
    return [Estimate(box, float(m), float(s)) for (box, _), m, s in zip(views, mean.cpu(), std.cpu())]


def annotate(rgb: np.ndarray, estimates: list[Estimate]) -> np.ndarray:
    """A copy with each face's box and age drawn on it."""
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    scale = max(img.shape[:2]) / 640
    for e in estimates:
        x, y, w, h = e.box
        cv2.rectangle(img, (x, y), (x + w, y + h), (0, 220, 0), max(1, round(2 * scale)))
        label = f"{e.age:.1f} +/- {e.std:.1f}"
        org = (x + 2, max(int(18 * scale), y - 6) if y > 20 * scale else y + int(20 * scale))
        cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0),
                    max(2, round(4 * scale)), cv2.LINE_AA)
        cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 255, 255),
                    max(1, round(1.5 * scale)), cv2.LINE_AA)
    return img


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="photos (JPEG/PNG)")
    p.add_argument("--model", required=True, help="a fold's model.pt")
    p.add_argument("--output", default=None,
                   help="annotated copy: a file for one photo, a folder for several "
                        "(default: NAME.age.jpg beside each photo)")
    p.add_argument("--no-detect", action="store_true",
                   help="photos are already aligned face crops: skip face detection")
    p.add_argument("--device", default="auto")


def _output_path(src: Path, output: str | None, many: bool) -> Path:
    if output is None:
        return src.with_name(f"{src.stem}.age.jpg")
    o = Path(output)
    if many or o.is_dir():
        return o / f"{src.stem}.age.jpg"
    return o


def output_paths(sources: list[Path], output: str | None) -> list[Path]:
    """Each photo's annotated copy; refused in one line where a copy would overwrite a photo
    given, or two photos would write one copy (a.jpg and a.png), or a photo is no regular file."""
    for src in sources:
        if not src.is_file():
            raise DataError(f"{src}: not a regular file (a folder, a device, a pipe, or missing)")
    dests = [_output_path(src, output, len(sources) > 1) for src in sources]
    given = {src.resolve(): src for src in sources}
    seen: dict[Path, Path] = {}
    for src, dest in zip(sources, dests):
        d = dest.resolve()
        if d in given:
            raise DataError(f"the annotated copy of {src} would overwrite the photo {given[d]}: give --output "
                            "another file or a folder")
        if d in seen:
            raise DataError(f"{seen[d]} and {src} would both write their annotated copy to {dest}: give "
                            "--output a folder, or rename one of them")
        seen[d] = src
    return dests


def run(args: argparse.Namespace) -> int:
    """Estimate the age of each face in photos."""
    device = resolve_device(args.device)
    fold = load_model(args.model, device)
    sources = [Path(name) for name in args.images]
    dests = output_paths(sources, args.output)  # before any photo is read: nothing half done
    # Faces are found and aligned as the model's training found them: on landmarks (FG-NET's, or
    # the detector's where a photo has none) or the detector; a model of whole photos sees them whole.
    detect = not args.no_detect and fold.config.align in ("landmarks", "detector")
    if not args.no_detect and not detect:
        print("note: this model was trained on whole, unaligned photos; scoring each whole photo")
    missing = []
    for src, dest in zip(sources, dests):
        rgb = load_rgb(src)
        estimates = predict_image(fold, rgb, device, detect)
        if not estimates:
            missing.append(str(src))
            print(f"{src}: no face found")
            continue
        for i, e in enumerate(estimates, 1):
            tag = f" face {i} at {e.box}" if detect else ""
            print(f"{src}{tag}: age {e.age:.1f} (+/- {e.std:.1f})")
        save_bgr(dest, annotate(rgb, estimates))
    if missing:
        raise DataError(f"no face found in {', '.join(missing)} (use --no-detect for aligned face crops)")
    return 0
