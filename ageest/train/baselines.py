"""Trivial reference methods, run per fold on exactly the fold's split: what a network must beat.

- `mean`: every test image gets the mean age of the fold's training images.
- `ridge`: ridge regression on small aligned grey crops (the cache's images, centre-cropped as
  evaluation sees them, greyscale, RIDGE_SIZE x RIDGE_SIZE), pixels standardised on the training
  images; the regularisation is the one with the lowest MAE on the fold's validation people.

Their fold folders hold metrics.json and predictions.tsv shaped like a trained fold's, so gather,
comparison and plots treat them like any loss. No torch: all 82 folds of a method take seconds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ageest.config import Config, add_config_arguments, load_config
from ageest.errors import AgeestError, ConfigError

BASELINES = ("mean", "ridge")
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


def fit_predict(method: str, ages: np.ndarray, split, features: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Predicted ages of the split's (val, test) images, and what was chosen."""
    tr, va, te = (np.asarray(idx, dtype=int) for idx in (split.train, split.val, split.test))
    if method == "mean":
        m = mean_predictor(ages[tr])
        return np.full(len(va), m), np.full(len(te), m), {"train_mean_age": m}
    if method == "ridge":
        mu, sd = features[tr].mean(0), features[tr].std(0) + 1e-6  # pixels standardised on train only
        z = (features - mu) / sd
        alpha, w, b, _ = ridge_select(z[tr], ages[tr], z[va], ages[va])
        return z[va] @ w + b, z[te] @ w + b, {"alpha": alpha, "pixels": RIDGE_SIZE}
    raise ConfigError(f"unknown baseline '{method}' (known: {', '.join(BASELINES)})")


def run_baselines(images: str | Path, methods: Sequence[str], folds: Sequence[int], out_root: str | Path,
                  config: Config, *, cache: str | Path | None = None, points: str | Path | None = None,
                  root: str | Path | None = None, split_dir: str | Path | None = None, log=print) -> list[dict]:
    """Each method on each fold (under LOPO: each subject's); writes out_root/METHOD/NNN/{predictions.tsv,metrics.json}.
    Images the cache skipped (`on_no_face: skip`) leave every part of the split, as in the trained folds."""
    from ageest.pipeline.cache import default_cache_path, default_points_dir, open_cache
    from ageest.data.dataset import read_records
    from ageest.data.fgnet import data_fingerprint
    from ageest.study.outputs import drop_skipped, fold_identity, fold_split, predictions_tsv, provenance
    from ageest.io import write_json_atomic, write_text_atomic

    unknown = [m for m in methods if m not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {', '.join(unknown)} (known: {', '.join(BASELINES)})")
    images = Path(images)
    records = read_records(images, root)
    points_dir = Path(points) if points else default_points_dir(images)
    # As train's: the landmark files count as data when the config aligns (gather compares them).
    fingerprint = data_fingerprint(records, points_dir if config.align == "landmarks" else None)
    ages = np.array([r.age for r in records], dtype=np.float64)
    features, skipped = None, []
    # The cache also lists the images without points to align on that the trained folds skip.
    if "ridge" in methods or (config.align != "none" and config.on_no_face == "skip"):
        arr, meta = open_cache(cache or default_cache_path(records, config, points_dir), records, config,
                               points_dir)
        features = grey_features(arr, config.image_size) if "ridge" in methods else None
        skipped = meta.get("skipped", [])
    results = []
    for fold in folds:
        split, digest = fold_split(records, fold, config, Path(split_dir) / f"{fold:03d}.tsv" if split_dir else None)
        split, n_skipped = drop_skipped(split, records, skipped, fold)
        for method in methods:
            t0 = time.perf_counter()
            val_pred, test_pred, chosen = fit_predict(method, ages, split, features)
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
                **provenance(config, fingerprint, digest, images),
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
    from ageest.data.dataset import add_data_arguments

    add_data_arguments(p)
    p.add_argument("--method", action="append", required=True, choices=BASELINES,
                   help="baseline to run (repeatable)")
    p.add_argument("--folds", "--subjects", dest="folds", type=int, nargs="+", required=True, metavar="N",
                   help="the folds (under lopo: the subjects left out)")
    p.add_argument("--out", required=True, help="root of the fold folders: OUT/METHOD/NNN/")
    add_config_arguments(p, "training config YAML (split, image_size, align, age range)")
    p.add_argument("--cache", default=None, help="preprocessing cache from `ageest prepare`")
    p.add_argument("--points", default=None, help="landmark folder (default: images/../points)")
    p.add_argument("--split-dir", default=None,
                   help="folder of NNN.tsv split files from `ageest split` (default: drawn from the config's seed)")


def run(args: argparse.Namespace) -> int:
    """The mean and ridge baselines on each subject's fold."""
    config = load_config(args.config, args.overrides)
    if not args.folds:
        raise AgeestError("no folds given")
    run_baselines(args.images, args.method, args.folds, args.out, config, cache=args.cache,
                  points=args.points, root=args.root, split_dir=args.split_dir, log=lambda m: print(m, flush=True))
    return 0
