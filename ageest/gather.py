"""Tables over all LOPO folds: folds, summary, comparison (paired tests), predictions, history.

Reads each fold's metrics.json with the predictions.tsv (and history.tsv, if there) beside it.
Folds of one study must share the data fingerprint and the training config; mixing is refused.
Loss names are data: whatever losses the folds hold are tabulated and compared to the reference.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from . import stats
from .config import OPERATIONAL_KEYS
from .errors import AgeestError
from .io import atomic_path

THETAS = range(11)
BAND_WIDTH = 10
PREDICTION_COLUMNS = ("predicted_age", "predicted_age_rounded")


class Fold:
    def __init__(self, metrics_path: Path, metrics: dict[str, Any], predictions: pd.DataFrame,
                 history: pd.DataFrame | None):
        self.path = metrics_path
        self.metrics = metrics
        self.loss = str(metrics["loss"])
        self.subject = int(metrics["subject"])
        self.predictions = predictions
        self.history = history

    @property
    def label(self) -> str:
        return f"{self.loss}/{self.subject:03d}"


def _metrics_path(p: str | Path) -> Path:
    p = Path(p)
    return p / "metrics.json" if p.is_dir() else p


def load_fold(path: str | Path) -> Fold:
    """One fold from its metrics.json (or its folder); predictions.tsv must be beside it."""
    mpath = _metrics_path(path)
    try:
        metrics = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise AgeestError(f"{mpath}: not found") from None
    except (OSError, json.JSONDecodeError) as e:
        raise AgeestError(f"{mpath}: not a readable metrics file ({e})") from None
    for key in ("loss", "subject", "data_fingerprint", "config"):
        if key not in metrics:
            raise AgeestError(f"{mpath}: no '{key}' key")
    ppath = mpath.parent / "predictions.tsv"
    try:
        pred = pd.read_csv(ppath, sep="\t")
    except FileNotFoundError:
        raise AgeestError(f"{ppath}: not found (needed beside {mpath.name})") from None
    need = {"image", "subject", "age", "predicted_age"}
    if not need <= set(pred.columns):
        raise AgeestError(f"{ppath}: missing column(s) {', '.join(sorted(need - set(pred.columns)))}")
    hpath = mpath.parent / "history.tsv"
    history = pd.read_csv(hpath, sep="\t") if hpath.is_file() else None
    return Fold(mpath, metrics, pred, history)


def _comparable_config(cfg: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in cfg.items() if k not in OPERATIONAL_KEYS}, sort_keys=True)


def _name_outliers(folds: list[Fold], key_of, what: str) -> None:
    """Refuse folds that disagree on key_of(fold): name the folds outside the largest group."""
    groups: dict[str, list[Fold]] = {}
    for f in folds:
        groups.setdefault(key_of(f), []).append(f)
    if len(groups) <= 1:
        return
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0].label))
    majority, others = ordered[0], [f for g in ordered[1:] for f in g]
    raise AgeestError(f"refusing to mix folds with different {what}: "
                      f"{', '.join(f.label for f in others)} differ from the other "
                      f"{len(majority)} fold(s) (e.g. {majority[0].label})")


def _config_difference(folds: list[Fold]) -> str:
    cfgs = [{k: v for k, v in f.metrics["config"].items() if k not in OPERATIONAL_KEYS} for f in folds]
    keys = sorted({k for c in cfgs for k in c if any(c.get(k) != d.get(k) for d in cfgs)})
    return ", ".join(keys)


def _precision(fold: Fold) -> str | None:
    """'bf16' or 'fp32' for a trained fold (from its `bf16` flag where it predates `precision`)."""
    m = fold.metrics
    if "precision" in m:
        return str(m["precision"])
    return ("bf16" if m["bf16"] else "fp32") if "bf16" in m else None


def check_consistent(folds: list[Fold]) -> None:
    """One study: no fold twice, one data fingerprint, one training config, one training precision,
    same subjects per loss."""
    if not folds:
        raise AgeestError("no folds given")
    seen: dict[tuple[str, int], Fold] = {}
    for f in folds:
        if (f.loss, f.subject) in seen:
            raise AgeestError(f"fold {f.label} given twice ({seen[(f.loss, f.subject)].path} and {f.path})")
        seen[(f.loss, f.subject)] = f
    _name_outliers(folds, lambda f: str(f.metrics["data_fingerprint"]), "data_fingerprint (data sets)")
    try:
        _name_outliers(folds, lambda f: _comparable_config(f.metrics["config"]), "config (training configs)")
    except AgeestError as e:
        raise AgeestError(f"{e}; differing key(s): {_config_difference(folds)}") from None
    # Trained folds record the precision they ran in; folds without it (baselines) are exempt.
    trained = [f for f in folds if _precision(f) is not None]
    _name_outliers(trained, lambda f: str(_precision(f)), "precision (bf16 and fp32 training)")
    by_loss: dict[str, set[int]] = {}
    for f in folds:
        by_loss.setdefault(f.loss, set()).add(f.subject)
    union = set().union(*by_loss.values())
    lacking = [f"{loss} lacks {', '.join(f'{s:03d}' for s in sorted(union - subs))}"
               for loss, subs in by_loss.items() if subs != union]
    if lacking:
        raise AgeestError(f"losses cover different subjects: {'; '.join(lacking)}")
    for f in folds:
        other = sorted(set(f.predictions["subject"].astype(int)) - {f.subject})
        if other:
            raise AgeestError(f"fold {f.label}: predictions.tsv holds subject(s) {other} besides the left-out one")


def predictions_table(folds: list[Fold], prediction: str = "predicted_age") -> pd.DataFrame:
    """All test predictions, one row per (loss, image), with error = prediction - age (years)."""
    if prediction not in PREDICTION_COLUMNS:
        raise AgeestError(f"--prediction must be one of {', '.join(PREDICTION_COLUMNS)}")
    rows = []
    for f in folds:
        p = f.predictions.copy()
        if prediction not in p.columns:
            raise AgeestError(f"fold {f.label}: predictions.tsv has no {prediction} column")
        p.insert(0, "loss", f.loss)
        p["subject"] = p["subject"].astype(int)
        p["error"] = p[prediction].astype(float) - p["age"].astype(float)
        p["abs_error"] = p["error"].abs()
        rows.append(p)
    out = pd.concat(rows, ignore_index=True)
    cols = ["loss", "subject", "image", "age", "predicted_age", "predicted_std", "predicted_age_rounded",
            "error", "abs_error"]
    return out[[c for c in cols if c in out.columns] + [c for c in out.columns if c not in cols]]


FOLDS_COLUMNS = ["loss", "subject", "n_test", "mae", "best_epoch", "val_mae", "seconds"]


def main_columns(table: str) -> list[str]:
    """Fixed leading columns of a table (summary and predictions add data-dependent ones)."""
    return {
        "folds": FOLDS_COLUMNS,
        "summary": ["loss", "n_subjects", "images", "mae", "subject_mae_mean", "subject_mae_sd"]
        + [f"cs_{t}" for t in THETAS],
        "comparison": COMPARISON_COLUMNS,
        "predictions": ["loss", "subject", "image", "age", "predicted_age", "error", "abs_error"],
    }[table]


def folds_table(folds: list[Fold], preds: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for f in folds:
        p = preds[(preds["loss"] == f.loss) & (preds["subject"] == f.subject)]
        m = f.metrics
        rows.append({"loss": f.loss, "subject": f.subject, "n_test": len(p),
                     "mae": stats.mae(p["abs_error"]), "best_epoch": m.get("best_epoch", math.nan),
                     "val_mae": m.get("val_mae", math.nan), "seconds": m.get("seconds", math.nan)})
    return pd.DataFrame(rows, columns=FOLDS_COLUMNS)


def _losses_in_order(folds: list[Fold]) -> list[str]:
    return list(dict.fromkeys(f.loss for f in folds))


def summary_table(preds: pd.DataFrame, folds_t: pd.DataFrame, losses: list[str]) -> pd.DataFrame:
    bands = sorted({stats.age_band(a, BAND_WIDTH) for a in preds["age"]})
    rows = []
    for loss in losses:
        p = preds[preds["loss"] == loss]
        per_subject = folds_t.loc[folds_t["loss"] == loss, "mae"].to_numpy(float)
        row: dict[str, Any] = {
            "loss": loss,
            "n_subjects": int(p["subject"].nunique()),
            "images": len(p),
            "mae": stats.mae(p["abs_error"]),
            "subject_mae_mean": float(per_subject.mean()),
            "subject_mae_sd": float(per_subject.std(ddof=1)) if per_subject.size > 1 else math.nan,
        }
        for t, v in stats.cumulative_score(p["abs_error"], THETAS).items():
            row[f"cs_{t}"] = v
        by_band = stats.mae_by_band(p["age"], p["abs_error"], BAND_WIDTH)
        for b in bands:
            row[f"mae_{b}"] = by_band.get(b, (math.nan, 0))[0]
        for b in bands:
            row[f"n_{b}"] = by_band.get(b, (math.nan, 0))[1]
        rows.append(row)
    return pd.DataFrame(rows)


# The unit of every figure is in its name: image_* over test images (image-weighted, the LOPO MAE),
# subject_* over subjects (one MAE per person). Images of one person are not independent, so the
# image-level CI and p come from a subject-clustered bootstrap (people resampled, not images).
COMPARISON_COLUMNS = [
    "loss", "reference", "n_subjects", "n_images", "image_mae", "image_mae_reference",
    "image_mae_diff", "image_clustered_ci_low", "image_clustered_ci_high", "image_clustered_p",
    "images_improved", "images_worse", "images_tied",
    "subject_mae_diff", "subject_wilcoxon_p", "subject_ci_low", "subject_ci_high",
    "subjects_improved", "subjects_worse", "subjects_tied", "bootstrap", "seed",
]


def comparison_table(preds: pd.DataFrame, folds_t: pd.DataFrame, losses: list[str], reference: str,
                     n_boot: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Each loss vs the reference (difference = loss - reference), over images and over subjects.

    Over images: the LOPO MAE difference, with a subject-clustered bootstrap CI and p-value
    (stats.cluster_bootstrap). Over subjects: the mean per-subject MAE difference, Wilcoxon
    signed-rank p and a bootstrap CI of it (stats.paired_comparison).
    """
    if reference not in losses:
        raise AgeestError(f"reference loss '{reference}' not among the folds' losses ({', '.join(losses)})")
    ref_img = preds[preds["loss"] == reference].set_index(["subject", "image"])["abs_error"]
    ref_sub = folds_t[folds_t["loss"] == reference].set_index("subject")["mae"]
    rows = []
    for loss in losses:
        if loss == reference:
            continue
        img = preds[preds["loss"] == loss].set_index(["subject", "image"])["abs_error"]
        if set(img.index) != set(ref_img.index):
            raise AgeestError(f"{loss} and {reference} were tested on different images")
        img = img.loc[ref_img.index]
        sub = folds_t[folds_t["loss"] == loss].set_index("subject")["mae"].loc[ref_sub.index]
        img_diff = img.to_numpy() - ref_img.to_numpy()
        pc = stats.cluster_bootstrap(img_diff, ref_img.index.get_level_values("subject").to_numpy(),
                                     n_boot=n_boot, seed=seed)
        improved, worse, tied = stats.paired_counts(img_diff)
        ps = stats.paired_comparison(sub.to_numpy(), ref_sub.to_numpy(), n_boot=n_boot, seed=seed)
        rows.append({
            "loss": loss, "reference": reference, "n_subjects": ps["n"], "n_images": pc["n"],
            "image_mae": stats.mae(img), "image_mae_reference": stats.mae(ref_img),
            "image_mae_diff": pc["estimate"], "image_clustered_ci_low": pc["ci_low"],
            "image_clustered_ci_high": pc["ci_high"], "image_clustered_p": pc["p"],
            "images_improved": improved, "images_worse": worse, "images_tied": tied,
            "subject_mae_diff": ps["mean_diff"], "subject_wilcoxon_p": ps["wilcoxon_p"],
            "subject_ci_low": ps["ci_low"], "subject_ci_high": ps["ci_high"],
            "subjects_improved": ps["improved"], "subjects_worse": ps["worse"], "subjects_tied": ps["tied"],
            "bootstrap": n_boot, "seed": seed,
        })
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def history_table(folds: list[Fold]) -> pd.DataFrame:
    rows = []
    for f in folds:
        if f.history is not None and len(f.history):
            h = f.history.copy()
            h.insert(0, "subject", f.subject)
            h.insert(0, "loss", f.loss)
            rows.append(h)
    if not rows:
        return pd.DataFrame(columns=["loss", "subject", "epoch", "val_mae"])
    return pd.concat(rows, ignore_index=True)


def _write_tsv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, na_rep="NaN")


def gather(paths: list[str | Path], outdir: str | Path, reference: str = "softmax",
           prediction: str = "predicted_age", n_boot: int = 10000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Read the folds, check they form one study, write the five tables; returns them by name."""
    folds = [load_fold(p) for p in paths]
    check_consistent(folds)
    losses = _losses_in_order(folds)
    preds = predictions_table(folds, prediction)
    folds_t = folds_table(folds, preds)
    tables = {
        "folds": folds_t,
        "summary": summary_table(preds, folds_t, losses),
        "comparison": comparison_table(preds, folds_t, losses, reference, n_boot, seed),
        "predictions": preds,
        "history": history_table(folds),
    }
    out = Path(outdir)
    for name, df in tables.items():
        _write_tsv(df, out / f"{name}.tsv")
    return tables


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folds", nargs="+", help="fold metrics.json files (or fold folders); "
                   "predictions.tsv and history.tsv are read from beside each")
    p.add_argument("--out", required=True, help="folder for folds/summary/comparison/predictions/history.tsv")
    p.add_argument("--reference", default="softmax", help="loss the others are compared with (default: %(default)s)")
    p.add_argument("--prediction", default="predicted_age", choices=PREDICTION_COLUMNS,
                   help="prediction column errors are computed from (default: %(default)s)")
    p.add_argument("--bootstrap", type=int, default=10000,
                   help="bootstrap resamples for the per-subject CI and the subject-clustered "
                   "image-level CI and p (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    tables = gather(args.folds, args.out, args.reference, args.prediction, args.bootstrap, args.seed)
    s = tables["summary"]
    for _, r in s.iterrows():
        print(f"{r['loss']}: LOPO MAE {r['mae']:.3f} years over {r['images']} images, "
              f"{r['n_subjects']} subjects")
    for _, r in tables["comparison"].iterrows():
        print(f"{r['loss']} - {r['reference']}: LOPO MAE difference {r['image_mae_diff']:+.3f} "
              f"(subject-clustered 95% CI {r['image_clustered_ci_low']:+.3f}..{r['image_clustered_ci_high']:+.3f}, "
              f"p {r['image_clustered_p']:.3g}); per-subject MAE difference {r['subject_mae_diff']:+.3f} "
              f"(95% CI {r['subject_ci_low']:+.3f}..{r['subject_ci_high']:+.3f}), "
              f"Wilcoxon p {r['subject_wilcoxon_p']:.3g}")
    print(f"tables -> {args.out}")
    return 0

