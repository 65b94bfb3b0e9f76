"""Tables over all folds of a study: folds, summary, seeds, comparison (paired tests), predictions, history.

The folds are those of one protocol (`lopo`, `kfold:K`, `split_file:PATH`; the training key
`protocol`). Under LOPO a fold is a person and folds.tsv names it `subject`; under the others
folds.tsv names it `fold`, and the predictions table has a `fold` column. Errors are paired per
image and per person whatever the protocol (a person's MAE is over all their test images), and
the bootstrap resamples people. Every table has a `protocol` column; data without people (a
manifest without a subject column) says "image-level" there: each image counts as its own person.

Reads each fold's metrics.json with the predictions.tsv (and history.tsv, if there) beside it.
Folds of one study must share the data fingerprint, the training config (but for its seed) and each
subject's split; mixing is refused. Method names are data: whatever losses and baselines the folds
hold are tabulated and compared to the reference.

Training seeds: a fold's seed is its config's `seed`. A method may have been trained with several;
each (method, seed) must then cover every subject. seeds.tsv has the figures of each (method, seed);
summary.tsv their mean over seeds, with the sd of the LOPO MAE over seeds. The comparison and the
CIs use seed-averaged errors: each image's absolute error averaged over the seeds (so each subject's
MAE is its MAE averaged over seeds). That is the expected error of one training run; averaging the
predictions instead would score an ensemble of the seeds, which is not what a loss delivers.
A study whose every method has one seed writes the tables of a one-seed study: no seed columns.

`skipped` (folds, seeds, summary): the test images a fold left out because the cache found no points
to align them on (`on_no_face: skip`, metrics.json's `n_test_skipped`; 0 for folds without it).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ageest.study import stats
from ageest.study.catalog import MAX_BOOTSTRAP, PER_FOLD, PREDICTION_COLUMNS, TABLES, THETAS
from ageest.config import OPERATIONAL_KEYS
from ageest.data.protocols import parse_protocol
from ageest.errors import AgeestError
from ageest.io import atomic_path, remove_temporaries

BAND_WIDTH = 10


class FoldResult:
    """One finished fold as gather reads it (trained or baseline): its metrics, its predictions
    and, for a trained fold, its training history."""

    def __init__(self, metrics_path: Path, metrics: dict[str, Any], predictions: pd.DataFrame,
                 history: pd.DataFrame | None):
        self.path = metrics_path
        self.metrics = metrics
        self.loss = str(metrics["loss"])
        self.fold = int(metrics.get("fold", metrics.get("subject")))
        self.protocol = str(metrics["config"].get("protocol", "lopo"))
        self.image_level = bool(metrics.get("image_level", False))
        self.seed = int(metrics["config"].get("seed", 0))
        self.seeded = False  # set by load_folds: labels and tables name seeds when a method has several
        self.predictions = predictions
        self.history = history

    @property
    def label(self) -> str:
        seed = f"seed{self.seed}/" if self.seeded else ""
        return f"{self.loss}/{seed}{self.fold:03d}"


def _metrics_path(p: str | Path) -> Path:
    p = Path(p)
    return p / "metrics.json" if p.is_dir() else p


def load_fold(path: str | Path) -> FoldResult:
    """One fold from its metrics.json (or its folder); predictions.tsv must be beside it."""
    mpath = _metrics_path(path)
    try:
        metrics = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise AgeestError(f"{mpath}: not found") from None
    except (OSError, json.JSONDecodeError) as e:
        raise AgeestError(f"{mpath}: not a readable metrics file ({e})") from None
    for key in ("loss", "data_fingerprint", "config"):
        if key not in metrics:
            raise AgeestError(f"{mpath}: no '{key}' key")
    if "fold" not in metrics and "subject" not in metrics:
        raise AgeestError(f"{mpath}: no 'fold' key")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("config"), dict):
        raise AgeestError(f"{mpath}: not a fold's metrics (no 'config' mapping)")
    ppath = mpath.parent / "predictions.tsv"
    if not ppath.is_file():
        raise AgeestError(f"{ppath}: not found (needed beside {mpath.name})")
    pred = _read_table(ppath)
    need = {"image", "subject", "age", "predicted_age"}
    if not need <= set(pred.columns):
        raise AgeestError(f"{ppath}: missing column(s) {', '.join(sorted(need - set(pred.columns)))}")
    for col in ("age", "predicted_age"):
        values = pd.to_numeric(pred[col], errors="coerce")
        bad = pred.index[values.isna() | ~values.abs().lt(float("inf"))]
        if len(bad):
            raise AgeestError(f"{ppath}, row {bad[0] + 2}, column {col}: {pred[col][bad[0]]!r} is not a finite number")
        pred[col] = values
    if pred.empty:
        raise AgeestError(f"{ppath}: no test images (a header and no rows)")
    hpath = mpath.parent / "history.tsv"
    history = _read_table(hpath) if hpath.is_file() else None
    return FoldResult(mpath, metrics, pred, history)


def _read_table(path: Path) -> pd.DataFrame:
    """A fold's TSV, or one line naming it where it is empty, not text or not a table."""
    try:
        return pd.read_csv(path, sep="\t")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as e:
        raise AgeestError(f"{path}: not a readable table ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None


def load_folds(paths: list[str | Path]) -> list[FoldResult]:
    folds = [load_fold(p) for p in paths]
    seeds: dict[str, set[int]] = {}
    for f in folds:
        seeds.setdefault(f.loss, set()).add(f.seed)
    seeded = any(len(s) > 1 for s in seeds.values())
    for f in folds:
        f.seeded = seeded
    return folds


# Keys that may differ between the folds of one study: where a fold ran, and the training seed
# (the replicate: folds of several seeds are one study).
FREE_KEYS = OPERATIONAL_KEYS | {"seed"}


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in FREE_KEYS}


def _comparable_config(cfg: dict[str, Any]) -> str:
    return json.dumps(_comparable(cfg), sort_keys=True)


def _name_outliers(folds: list[FoldResult], key_of, what: str) -> None:
    """Refuse folds that disagree on key_of(fold): name the folds outside the largest group."""
    groups: dict[str, list[FoldResult]] = {}
    for f in folds:
        groups.setdefault(key_of(f), []).append(f)
    if len(groups) <= 1:
        return
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0].label))
    majority, others = ordered[0], [f for g in ordered[1:] for f in g]
    raise AgeestError(f"refusing to mix folds with different {what}: "
                      f"{', '.join(f.label for f in others)} differ from the other "
                      f"{len(majority)} fold(s) (e.g. {majority[0].label})")


def _config_difference(folds: list[FoldResult]) -> str:
    cfgs = [_comparable(f.metrics["config"]) for f in folds]
    keys = sorted({k for c in cfgs for k in c if any(c.get(k) != d.get(k) for d in cfgs)})
    return ", ".join(keys)


def _precision(fold: FoldResult) -> str | None:
    """'bf16' or 'fp32' for a trained fold (from its `bf16` flag where it predates `precision`)."""
    m = fold.metrics
    if "precision" in m:
        return str(m["precision"])
    return ("bf16" if m["bf16"] else "fp32") if "bf16" in m else None


def check_consistent(folds: list[FoldResult]) -> None:
    """One study: no fold twice, one data fingerprint, one training config, one training precision,
    one split per subject (where folds record it), same subjects per method and seed."""
    if not folds:
        raise AgeestError("no folds given")
    seen: dict[tuple[str, int, int], FoldResult] = {}
    for f in folds:
        key = (f.loss, f.seed, f.fold)
        if key in seen:
            raise AgeestError(f"fold {f.label} given twice ({seen[key].path} and {f.path})")
        seen[key] = f
    _name_outliers(folds, lambda f: str(f.metrics["data_fingerprint"]), "data_fingerprint (data sets)")
    try:
        _name_outliers(folds, lambda f: _comparable_config(f.metrics["config"]), "config (training configs)")
    except AgeestError as e:
        raise AgeestError(f"{e}; differing key(s): {_config_difference(folds)}") from None
    # Trained folds record the precision they ran in; folds without it (baselines) are exempt.
    trained = [f for f in folds if _precision(f) is not None]
    _name_outliers(trained, lambda f: str(_precision(f)), "precision (bf16 and fp32 training)")
    # Every method and seed of a fold validates on the same people (the split is drawn once).
    unit = fold_unit(folds)
    for s in sorted({f.fold for f in folds}):
        _name_outliers([f for f in folds if f.fold == s and "split_digest" in f.metrics],
                       lambda f: str(f.metrics["split_digest"]), f"split_digest (validation splits of {unit} {s:03d})")
    by_run: dict[tuple[str, int], set[int]] = {}
    for f in folds:
        by_run.setdefault((f.loss, f.seed), set()).add(f.fold)
    union = set().union(*by_run.values())
    seeded = folds[0].seeded
    lacking = [f"{loss}{f' seed {seed}' if seeded else ''} lacks {', '.join(f'{s:03d}' for s in sorted(union - subs))}"
               for (loss, seed), subs in by_run.items() if subs != union]
    if lacking:
        raise AgeestError(f"losses cover different {unit}s: {'; '.join(lacking)}")
    if unit == "subject":
        for f in folds:
            other = sorted(set(f.predictions["subject"].astype(int)) - {f.fold})
            if other:
                raise AgeestError(f"fold {f.label}: predictions.tsv holds subject(s) {other} besides the left-out one")
    elif not folds[0].protocol.startswith("split_file:"):
        # k-fold: each image tested once per method and seed, each person in one fold only.
        for what in ("image", "subject"):
            where: dict[tuple, FoldResult] = {}
            for f in folds:
                for v in set(f.predictions[what]):
                    other = where.setdefault((f.loss, f.seed, v), f)
                    if other is not f:
                        raise AgeestError(f"folds {other.label} and {f.label} both test {what} {v}: "
                                          f"the folds of {f.protocol} must test disjoint people")


def fold_unit(folds: list[FoldResult]) -> str:
    """What a fold is called in the tables: 'subject' under LOPO (a fold is a person), else 'fold'."""
    return parse_protocol(folds[0].protocol).unit


def protocol_label(folds: list[FoldResult]) -> str:
    """The protocol as the tables state it, 'image-level' where the data has no people."""
    f = folds[0]
    return f"{f.protocol}, image-level (no subject column: each image its own person)" if f.image_level else f.protocol


def predictions_table(folds: list[FoldResult], prediction: str = "predicted_age") -> pd.DataFrame:
    """All test predictions, one row per (loss, seed, image), with error = prediction - age (years)."""
    if prediction not in PREDICTION_COLUMNS:
        raise AgeestError(f"--prediction must be one of {', '.join(PREDICTION_COLUMNS)}")
    rows = []
    for f in folds:
        p = f.predictions.copy()
        if prediction not in p.columns:
            raise AgeestError(f"fold {f.label}: predictions.tsv has no {prediction} column")
        p.insert(0, "fold", f.fold)
        p.insert(0, "seed", f.seed)
        p.insert(0, "loss", f.loss)
        p["subject"] = p["subject"].astype(int)
        if "predicted_age_rounded" not in p.columns:
            raise AgeestError(f"fold {f.label}: predictions.tsv has no predicted_age_rounded column")
        p["error"] = p[prediction].astype(float) - p["age"].astype(float)
        p["abs_error"] = p["error"].abs()
        # CS(θ) counts integer predictions, as the literature does, whatever `prediction` is.
        p["abs_error_rounded"] = (p["predicted_age_rounded"].astype(float) - p["age"].astype(float)).abs()
        rows.append(p)
    out = pd.concat(rows, ignore_index=True)
    cols = ["loss", "seed", "fold", "subject", "image", "age", "predicted_age", "predicted_std", "predicted_age_rounded",
            "error", "abs_error", "abs_error_rounded"]
    return out[[c for c in cols if c in out.columns] + [c for c in out.columns if c not in cols]]


FOLDS_COLUMNS = [c for c in TABLES["folds"] if c != "protocol"]  # the protocol column is added last


def folds_table(folds: list[FoldResult], preds: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, seed, fold); the fold column is named by `fold_unit`."""
    rows = []
    for f in folds:
        p = preds[(preds["loss"] == f.loss) & (preds["seed"] == f.seed) & (preds["fold"] == f.fold)]
        m = f.metrics
        rows.append({"loss": f.loss, "seed": f.seed, "subject": f.fold, "n_test": len(p),
                     "mae": stats.mae(p["abs_error"]), "best_epoch": m.get("best_epoch", math.nan),
                     "val_mae": m.get("val_mae", math.nan), "seconds": m.get("seconds", math.nan),
                     "skipped": int(m.get("n_test_skipped", 0))})  # folds from before skipping skipped none
    return pd.DataFrame(rows, columns=FOLDS_COLUMNS).rename(columns={"subject": fold_unit(folds)})


def subject_maes(preds: pd.DataFrame) -> pd.Series:
    """MAE per (loss, seed, subject) over the person's test images (under LOPO: the fold's MAE)."""
    return preds.groupby(["loss", "seed", "subject"], sort=False)["abs_error"].apply(stats.mae)


def _losses_in_order(folds: list[FoldResult]) -> list[str]:
    return list(dict.fromkeys(f.loss for f in folds))


def seeds_table(preds: pd.DataFrame, folds_t: pd.DataFrame, sub_t: pd.Series, losses: list[str]) -> pd.DataFrame:
    """One row per (method, seed): its MAE over images, per-subject MAE, CS(θ), MAE per age band."""
    bands = sorted({stats.age_band(a, BAND_WIDTH) for a in preds["age"]})
    rows = []
    for loss in losses:
        for seed in sorted(preds.loc[preds["loss"] == loss, "seed"].unique()):
            p = preds[(preds["loss"] == loss) & (preds["seed"] == seed)]
            fs = folds_t[(folds_t["loss"] == loss) & (folds_t["seed"] == seed)]
            rows.append(_summary_row(loss, int(seed), p, sub_t.loc[(loss, seed)].to_numpy(float), bands,
                                     int(fs["skipped"].sum())))
    return pd.DataFrame(rows)


def _summary_row(loss: str, seed: int, p: pd.DataFrame, per_subject, bands: list[str],
                 skipped: int = 0) -> dict[str, Any]:
    row: dict[str, Any] = {
        "loss": loss,
        "seed": seed,
        "n_subjects": int(p["subject"].nunique()),
        "images": len(p),
        "mae": stats.mae(p["abs_error"]),
        "mae_rounded": stats.mae(p["abs_error_rounded"]),
        "subject_mae_mean": float(per_subject.mean()),
        "subject_mae_sd": float(per_subject.std(ddof=1)) if per_subject.size > 1 else math.nan,
    }
    for t, v in stats.cumulative_score(p["abs_error_rounded"], THETAS).items():
        row[f"cs_{t}"] = v
    row["skipped"] = skipped  # test images the folds left out (no points to align on)
    by_band = stats.mae_by_band(p["age"], p["abs_error"], BAND_WIDTH)
    for b in bands:
        row[f"mae_{b}"] = by_band.get(b, (math.nan, 0))[0]
    for b in bands:
        row[f"n_{b}"] = by_band.get(b, (math.nan, 0))[1]
    return row


def summary_table(seeds_t: pd.DataFrame, img_err: pd.Series, n_boot: int = 10000, seed: int = 0) -> pd.DataFrame:
    """One row per method: each figure of seeds.tsv averaged over the method's seeds (counts are
    the same for every seed), the sd of the LOPO MAE over seeds (NaN for one seed) and the
    subject-clustered bootstrap 95% CI of the LOPO MAE from the seed-averaged image errors."""
    counts = [c for c in seeds_t.columns if c in ("images", "skipped") or c.startswith("n_")]
    means = [c for c in seeds_t.columns if c not in counts and c not in ("loss", "seed")]
    by = seeds_t.groupby("loss", sort=False)
    out = by[counts].first().join(by[means].mean())
    out["n_seeds"] = by["seed"].nunique()
    out["mae_seed_sd"] = by["mae"].std(ddof=1)
    for loss in out.index:
        e = img_err.loc[loss]
        ci = stats.cluster_bootstrap(e.to_numpy(), e.index.get_level_values("subject").to_numpy(),
                                     n_boot=n_boot, seed=seed)
        out.loc[loss, ["mae_ci_low", "mae_ci_high"]] = ci["ci_low"], ci["ci_high"]
    out = out.reset_index()
    first = list(TABLES["summary"])
    return out[first + [c for c in seeds_t.columns if c not in first and c != "seed"]]


# The unit of every figure is in its name: image_* over test images (image-weighted, the LOPO MAE),
# subject_* over subjects (one MAE per person). Images of one person are not independent, so the
# image-level CI and p come from a subject-clustered bootstrap (people resampled, not images).
COMPARISON_COLUMNS = list(TABLES["comparison"])


def seed_averaged(preds: pd.DataFrame, sub_t: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(absolute error per (loss, fold, subject, image), MAE per (loss, subject)), each averaged
    over the loss's seeds. Every seed tests the same images, so the second is the per-subject mean
    of the first. (The fold level keeps apart an image a fixed split tests in several folds.)"""
    img = preds.groupby(["loss", "fold", "subject", "image"], sort=False)["abs_error"].mean()
    sub = sub_t.groupby(level=["loss", "subject"], sort=False).mean()
    return img, sub


def comparison_table(img_err: pd.Series, sub_mae: pd.Series, n_seeds: dict[str, int], reference: str,
                     n_boot: int = 10000, seed: int = 0, compare_with: Sequence[str] = ()) -> pd.DataFrame:
    """Each method vs the reference (difference = method - reference), over images and over subjects,
    on seed-averaged errors (`seed_averaged`); one row per method but the reference. Then the same
    against each method of `compare_with` (the zero-shot network, say), leaving out the pairs
    already compared the other way round.

    Over images: the LOPO MAE difference, with a subject-clustered bootstrap CI and p-value
    (stats.cluster_bootstrap). Over subjects: the mean per-subject MAE difference, Wilcoxon
    signed-rank p and a bootstrap CI of it (stats.paired_comparison).
    """
    losses = list(n_seeds)
    for r in (reference, *compare_with):
        if r not in losses:
            raise AgeestError(f"reference loss '{r}' not among the folds' losses ({', '.join(losses)})")
    rows = []
    done = set()
    for ref in dict.fromkeys((reference, *compare_with)):
        rows += _compare_with(ref, [m for m in losses if m != ref and (ref, m) not in done],
                              img_err, sub_mae, n_seeds, n_boot, seed)
        done |= {(m, ref) for m in losses}
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _compare_with(reference: str, losses: list[str], img_err: pd.Series, sub_mae: pd.Series,
                  n_seeds: dict[str, int], n_boot: int, seed: int) -> list[dict]:
    ref_img, ref_sub = img_err.loc[reference], sub_mae.loc[reference]
    rows = []
    for loss in losses:
        img = img_err.loc[loss]
        if set(img.index) != set(ref_img.index):
            raise AgeestError(f"{loss} and {reference} were tested on different images")
        img = img.loc[ref_img.index]
        sub = sub_mae.loc[loss].loc[ref_sub.index]
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
            "bootstrap": n_boot, "seed": seed, "n_seeds": n_seeds[loss], "n_seeds_reference": n_seeds[reference],
        })
    return rows


def history_table(folds: list[FoldResult]) -> pd.DataFrame:
    rows = []
    for f in folds:
        if f.history is not None and len(f.history):
            h = f.history.copy()
            h.insert(0, fold_unit(folds), f.fold)
            h.insert(0, "seed", f.seed)
            h.insert(0, "loss", f.loss)
            rows.append(h)
    if not rows:
        return pd.DataFrame(columns=["loss", "seed", fold_unit(folds), "epoch", "val_mae"])
    return pd.concat(rows, ignore_index=True)


def _write_tsv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, na_rep="NaN")


def gather(paths: list[str | Path], outdir: str | Path, reference: str = "softmax",
           prediction: str = "predicted_age", n_boot: int = 10000, seed: int = 0,
           compare_with: Sequence[str] = ()) -> dict[str, pd.DataFrame]:
    """Read the folds, check they form one study, write the six tables; returns them by name.
    The comparison is against `reference`, then against each of `compare_with`."""
    remove_temporaries(Path(outdir) / f"{t}.tsv" for t in TABLES)  # a killed gather's
    folds = load_folds(paths)
    check_consistent(folds)
    losses = _losses_in_order(folds)
    preds = predictions_table(folds, prediction)
    folds_t = folds_table(folds, preds)
    sub_t = subject_maes(preds)
    seeds_t = seeds_table(preds, folds_t, sub_t, losses)
    img_err, sub_mae = seed_averaged(preds, sub_t)
    summary = summary_table(seeds_t, img_err, n_boot, seed)
    n_seeds = dict(zip(summary["loss"], summary["n_seeds"]))
    tables = {
        "folds": folds_t,
        "summary": summary,
        "seeds": seeds_t,
        "comparison": comparison_table(img_err, sub_mae, n_seeds, reference, n_boot, seed, compare_with),
        "predictions": preds,
        "history": history_table(folds),
    }
    if fold_unit(folds) == "subject":  # LOPO: the fold is the subject column
        tables["predictions"] = preds.drop(columns="fold")
    if not folds[0].seeded:  # a one-seed study: the tables it always had
        tables.update({t: tables[t].drop(columns="seed") for t in PER_FOLD})
    label = protocol_label(folds)
    for df in tables.values():
        df["protocol"] = label
    out = Path(outdir)
    for name, df in tables.items():
        _write_tsv(df, out / f"{name}.tsv")
    return tables


def _bootstrap_count(text: str) -> int:
    n = int(text)
    if not 1 <= n <= MAX_BOOTSTRAP:  # each resample costs a pass over every image
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_BOOTSTRAP:,} resamples, not {n}")
    return n



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folds", nargs="+", help="fold metrics.json files (or fold folders); "
                   "predictions.tsv and history.tsv are read from beside each")
    p.add_argument("--out", required=True,
                   help="folder for folds/summary/seeds/comparison/predictions/history.tsv")
    p.add_argument("--reference", default="softmax", help="loss the others are compared with (default: %(default)s)")
    p.add_argument("--compare-with", action="append", default=[], metavar="METHOD",
                   help="another method (a loss or a baseline) the others are compared with too (repeatable)")
    p.add_argument("--prediction", default="predicted_age", choices=PREDICTION_COLUMNS,
                   help="prediction column errors are computed from (default: %(default)s)")
    p.add_argument("--bootstrap", type=_bootstrap_count, default=10000,
                   help="bootstrap resamples for the per-subject CI and the subject-clustered "
                   "image-level CI and p (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    tables = gather(args.folds, args.out, args.reference, args.prediction, args.bootstrap, args.seed,
                    args.compare_with)
    s = tables["summary"]
    for _, r in s.iterrows():
        spread = f" ± {r['mae_seed_sd']:.3f} (sd over {r['n_seeds']} seeds)" if r["n_seeds"] > 1 else ""
        print(f"{r['loss']}: MAE {r['mae']:.3f}{spread} years (subject-clustered 95% CI "
              f"{r['mae_ci_low']:.3f}..{r['mae_ci_high']:.3f}) over {r['images']} images, "
              f"{r['n_subjects']} subjects")
    for _, r in tables["comparison"].iterrows():
        print(f"{r['loss']} - {r['reference']}: MAE difference {r['image_mae_diff']:+.3f} "
              f"(subject-clustered 95% CI {r['image_clustered_ci_low']:+.3f}..{r['image_clustered_ci_high']:+.3f}, "
              f"p {r['image_clustered_p']:.3g}); per-subject MAE difference {r['subject_mae_diff']:+.3f} "
              f"(95% CI {r['subject_ci_low']:+.3f}..{r['subject_ci_high']:+.3f}), "
              f"Wilcoxon p {r['subject_wilcoxon_p']:.3g}")
    print(f"tables -> {args.out}")
    return 0

