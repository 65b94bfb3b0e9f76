"""Plots of the study's tables (from `ageest gather`): PNGs readable without the tables.

ranking.png             every method ranked by MAE over all test images, with its subject-clustered 95% CI
subject_mae_paired.png  per-subject MAE, each method vs the reference (diagonal = equal)
cs_curves.png           cumulative score CS(θ) per method
predicted_vs_true.png   predicted vs true age per method
mae_by_age_band.png     MAE per 10-year age band per method
training_curves.png     validation MAE per epoch across folds, mean ± sd band, one panel per loss

With several training seeds, figures are seed means and every plot shows the seeds' spread: the
range over seeds (whiskers, bands, one dot or line per seed), never an sd of two or three values.
Plots with a panel per method wrap them into rows, so 7-9 methods stay readable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ageest.errors import AgeestError
from ageest.methods import BASELINES
from ageest.study.catalog import PER_FOLD, PLOTS
from ageest.study.gather import subject_maes
from ageest.io import atomic_path, remove_temporaries

PANEL_COLUMNS = 3  # panels per row in the per-method plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def _read(tables: Path, name: str) -> pd.DataFrame:
    p = tables / f"{name}.tsv"
    try:
        df = pd.read_csv(p, sep="\t")
    except FileNotFoundError:
        raise AgeestError(f"{p}: not found (run `ageest gather` first)") from None
    # A one-seed study's per-fold tables have no seed column: one seed, whichever it was.
    return df.assign(seed=0) if name in PER_FOLD and "seed" not in df.columns else df


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)


def method_order(names) -> list[str]:
    """Trained losses first (in the order given), then the baselines in their registry's order:
    every plot uses this order."""
    names = list(dict.fromkeys(names))
    return [n for n in names if n not in BASELINES] + [b for b in BASELINES if b in names]


def method_style(names) -> dict[str, dict]:
    """One colour per method in every plot; baselines grey and dashed, so they read as references
    (their grey and legend are their registry entry's)."""
    import seaborn as sns

    order = method_order(names)
    trained = [n for n in order if n not in BASELINES]
    # tab10 without its grey (the baselines' colour); more losses than that get evenly spaced hues.
    tab9 = [c for i, c in enumerate(sns.color_palette("tab10")) if i != 7]
    colours = dict(zip(trained, tab9 if len(trained) <= 9 else sns.color_palette("husl", len(trained))))
    out = {}
    for n in order:
        b = BASELINES.get(n)
        out[n] = ({"color": b.grey, "ls": "--", "label": b.label or f"{n} (baseline)"} if b
                  else {"color": colours[n], "ls": "-", "label": n})
    return out


def _most_seeds(df: pd.DataFrame) -> int:
    """The most training seeds any method of a per-fold or per-seed table has (1: a one-seed study)."""
    return int(df.groupby("loss")["seed"].nunique().max())


def _study_note(folds: pd.DataFrame) -> str:
    seeds = _most_seeds(folds)
    # The table says what a fold is: its fold column is 'subject' under LOPO, 'fold' otherwise.
    what = (f"LOPO, {folds['subject'].nunique()} subjects" if "subject" in folds.columns
            else f"{folds['protocol'].iloc[0]}, {folds['fold'].nunique()} folds")
    return what + (f", up to {seeds} training seeds" if seeds > 1 else "")



def _panels(plt, n: int, size: float, **kw):
    """A grid of n panels, PANEL_COLUMNS per row; unused panels hidden."""
    cols = min(n, PANEL_COLUMNS)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False, **kw)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend_outside(ax, title: str) -> None:
    ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")


def plot_ranking(summary: pd.DataFrame, seeds: pd.DataFrame, reference: str, path: Path) -> None:
    plt, sns = _plt()
    styles = method_style(summary["loss"])
    s = summary.sort_values("mae").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(s)))
    several = bool((s["n_seeds"] > 1).any())
    for y, r in s.iterrows():
        st = styles[r["loss"]]
        # One subject gives a CI of width 0 around the MAE, float noise either side: whiskers >= 0.
        whiskers = np.maximum(0.0, [[r["mae"] - r["mae_ci_low"]], [r["mae_ci_high"] - r["mae"]]])
        ax.errorbar(r["mae"], y, xerr=whiskers, fmt="o",
                    color=st["color"], ms=8, capsize=4, lw=2, label="MAE, 95% CI" if y == 0 else None)
        per_seed = seeds.loc[seeds["loss"] == r["loss"], "mae"]
        if len(per_seed) > 1:
            first = "one training seed" not in ax.get_legend_handles_labels()[1]
            ax.scatter(per_seed, [y + 0.25] * len(per_seed), marker="|", s=120, color=st["color"],
                       label="one training seed" if first else None)
        ax.annotate(f"{r['mae']:.2f} [{r['mae_ci_low']:.2f}, {r['mae_ci_high']:.2f}]", (1.01, y),
                    xycoords=("axes fraction", "data"), va="center", fontsize="small")
    names = [styles[m]["label"] + (" (reference)" if m == reference else "") for m in s["loss"]]
    ax.set_yticks(range(len(s)), names)
    ax.set_ylim(len(s) - 0.5, -0.7)  # best on top
    ax.set_xlabel("MAE (years; all test images" + (", mean over seeds)" if several else ")"))
    ax.set_title("Methods ranked by MAE\n95% CI: subject-clustered bootstrap"
                 + (" of seed-averaged errors; ticks: each seed's MAE" if several else ""))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / len(s) - 0.12), ncol=2, fontsize="small")
    _save(fig, path)


def plot_subject_mae_paired(folds: pd.DataFrame, subjects: pd.DataFrame, reference: str, path: Path) -> None:
    """`subjects`: MAE per (loss, seed, subject) over each person's test images (gather's `subject_maes`)."""
    plt, sns = _plt()
    by = subjects.groupby(["subject", "loss"])["mae"]
    mean, lo, hi_ = (by.agg(f).unstack("loss") for f in ("mean", "min", "max"))
    others = [m for m in method_order(folds["loss"]) if m != reference]
    several = _most_seeds(folds) > 1
    fig, axes = _panels(plt, max(1, len(others)), 4.6)
    hi = float(hi_.max().max()) * 1.05 if len(mean) else 1.0
    for ax, loss in zip(axes, others or [None]):
        ax.plot([0, hi], [0, hi], ls="--", color="grey", lw=1, label="equal MAE")
        if loss is not None:
            x, y = mean[reference], mean[loss]
            better = y < x
            if several:  # whiskers: each subject's MAE range over the training seeds
                ax.errorbar(x, y, xerr=[x - lo[reference], hi_[reference] - x], yerr=[y - lo[loss], hi_[loss] - y],
                            fmt="none", ecolor="0.6", lw=0.8, label="range over seeds")
            ax.scatter(x[better], y[better], color="tab:green", s=24, label=f"{loss} better", zorder=3)
            ax.scatter(x[~better], y[~better], color="tab:red", s=24, label=f"{reference} better or tied", zorder=3)
            ax.set_title(f"{loss} vs {reference}\n({int(better.sum())} of {len(mean)} subjects lower with {loss})",
                         fontsize="medium")
            ax.set_ylabel(f"MAE with {loss} (years)")
        else:
            ax.set_title(f"Only the reference ({reference}) was run")
            ax.set_ylabel("MAE (years)")
        ax.set_xlabel(f"MAE with {reference} (years)")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_aspect("equal")
        # Below the axes: inside, it hid the points of high-MAE subjects.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="x-small")
    what = "mean over seeds, " if several else ""
    fig.suptitle(f"Per-subject MAE ({what}each point one person's test images; {_study_note(folds)})", y=1.0)
    fig.tight_layout()
    _save(fig, path)


def plot_cs_curves(summary: pd.DataFrame, seeds: pd.DataFrame, path: Path) -> None:
    plt, sns = _plt()
    cs_cols = sorted((c for c in summary.columns if c.startswith("cs_")), key=lambda c: int(c[3:]))
    thetas = [int(c[3:]) for c in cs_cols]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for m, st in method_style(summary["loss"]).items():
        ax.plot(thetas, 100 * summary.loc[summary["loss"] == m, cs_cols].iloc[0].to_numpy(float), marker="o",
                ms=4, color=st["color"], ls=st["ls"], label=st["label"])
        per_seed = 100 * seeds.loc[seeds["loss"] == m, cs_cols].to_numpy(float)
        if len(per_seed) > 1:
            ax.fill_between(thetas, per_seed.min(axis=0), per_seed.max(axis=0), color=st["color"], alpha=0.15, lw=0)
    several = bool((summary["n_seeds"] > 1).any())
    ax.set_xlabel("Error level θ (years)")
    ax.set_ylabel("Cumulative score CS(θ) (% of test images)")
    ax.set_title("Cumulative score: share of test images whose integer predicted age is within θ years"
                 + ("\n(mean over seeds; band: range over seeds)" if several else ""))
    ax.set_ylim(0, 100)
    ax.set_xticks(thetas)
    _legend_outside(ax, "Method")
    _save(fig, path)


def plot_predicted_vs_true(preds: pd.DataFrame, path: Path) -> None:
    plt, sns = _plt()
    styles = method_style(preds["loss"])
    losses = list(styles)
    preds = preds.assign(prediction=preds["age"] + preds["error"])  # the prediction gather scored
    hi = float(max(preds["age"].max(), preds["prediction"].max())) + 2
    fig, axes = _panels(plt, len(losses), 4.3, sharex=True, sharey=True)
    for ax, loss in zip(axes, losses):
        p = preds[preds["loss"] == loss]
        n_seeds = p["seed"].nunique()
        ax.plot([0, hi], [0, hi], ls="--", color="grey", lw=1, label="perfect prediction")
        ax.scatter(p["age"], p["prediction"], s=8, alpha=0.4 if n_seeds == 1 else 0.25, color=styles[loss]["color"],
                   label="test image" if n_seeds == 1 else f"test image × {n_seeds} seeds")
        mae = p["abs_error"].mean()  # over seeds too: every seed tests the same images
        ax.set_title(f"{styles[loss]['label']}\nMAE {mae:.2f} years ({p['image'].nunique()} images)",
                     fontsize="medium")
        ax.set_xlabel("True age (years)")
        ax.set_ylabel("Predicted age (years)")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.legend(loc="upper left", fontsize="x-small")
    fig.suptitle("Predicted vs true age of every left-out test image", y=1.0)
    fig.tight_layout()
    _save(fig, path)


def plot_mae_by_age_band(seeds: pd.DataFrame, path: Path) -> None:
    plt, sns = _plt()
    band_cols = [c for c in seeds.columns if c.startswith("mae_") and c[4:6].isdigit()]
    long = seeds.melt(id_vars=["loss", "seed"], value_vars=band_cols, var_name="band", value_name="band_mae")
    long["band"] = long["band"].str[4:].str.replace("_", "–")
    counts = {c[2:].replace("_", "–"): int(seeds[c].iloc[0]) for c in seeds.columns
              if c.startswith("n_") and c[2:4].isdigit()}
    long["band"] = long["band"].map(lambda b: f"{b}\n(n={counts.get(b, 0)})")
    styles = method_style(seeds["loss"])
    several = _most_seeds(seeds) > 1
    fig, ax = plt.subplots(figsize=(max(7.5, (0.25 * len(styles) + 0.4) * len(band_cols) + 2), 4.8))
    long["method"] = long["loss"].map(lambda m: styles[m]["label"])
    sns.barplot(data=long, x="band", y="band_mae", hue="method", ax=ax, errorbar=("pi", 100) if several else None,
                hue_order=[st["label"] for st in styles.values()],
                palette={st["label"]: st["color"] for st in styles.values()})
    ax.set_xlabel("True age band (years; n = test images per method)")
    ax.set_ylabel("MAE (years)")
    ax.set_title("Mean absolute error by age band" + (" (mean over seeds; whiskers: range over seeds)" if several else ""))
    _legend_outside(ax, "Method")
    _save(fig, path)


def plot_training_curves(history: pd.DataFrame, path: Path, folds: pd.DataFrame | None = None) -> None:
    from matplotlib.ticker import MaxNLocator

    plt, sns = _plt()
    h = history.dropna(subset=["val_mae"]) if "val_mae" in history.columns else history.iloc[0:0]
    if not len(h):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        ax.set_title("Validation MAE per epoch: no training history recorded")
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Validation MAE (years)")
        _save(fig, path)
        return
    names = list(h["loss"]) + (list(folds["loss"]) if folds is not None else [])
    styles = method_style(names)
    trained = [m for m in styles if m in set(h["loss"])]
    fig, axes = _panels(plt, len(trained), 4.2, sharex=True, sharey=True)
    for ax, loss in zip(axes, trained):
        d = h[h["loss"] == loss]
        colour = styles[loss]["color"]
        sns.lineplot(data=d, x="epoch", y="val_mae", errorbar="sd", color=colour, marker="o", ax=ax,
                     label="mean ± sd over folds")
        if d["seed"].nunique() > 1:  # one thin line per training seed: the mean over its folds
            for i, (seed, per_seed) in enumerate(d.groupby("seed")):
                curve = per_seed.groupby("epoch")["val_mae"].mean()
                ax.plot(curve.index, curve.to_numpy(), color=colour, lw=0.8, ls=":",
                        label="one seed (mean over folds)" if i == 0 else None)
        # The baselines have no epochs: their mean validation MAE over the same folds, as a level.
        for m in styles:
            if folds is not None and m not in trained:
                v = folds.loc[folds["loss"] == m, "val_mae"].mean()
                ax.axhline(v, color=styles[m]["color"], ls="--", lw=1.2, label=f"{styles[m]['label']}: {v:.1f}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        unit = "subject" if "subject" in d.columns else "fold"
        ax.set_title(f"{loss} ({d.groupby(['seed', unit]).ngroups} fold runs)", fontsize="medium")
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Validation MAE (years)")
        if ax is axes[0]:  # the same entries in every panel, but for the colour
            ax.legend(fontsize="x-small")
        else:
            ax.get_legend().remove()
    fig.suptitle("Validation MAE per epoch", y=1.0)
    fig.tight_layout()
    _save(fig, path)


def make_plots(tables: str | Path, outdir: str | Path, reference: str = "softmax") -> list[Path]:
    tables, outdir = Path(tables), Path(outdir)
    remove_temporaries(outdir / f"{name}.png" for name in PLOTS)  # a killed run's half-written plots
    folds, summary, seeds = _read(tables, "folds"), _read(tables, "summary"), _read(tables, "seeds")
    preds, history = _read(tables, "predictions"), _read(tables, "history")
    if reference not in set(folds["loss"]):
        raise AgeestError(f"reference loss '{reference}' not in {tables / 'folds.tsv'} "
                          f"({', '.join(sorted(set(folds['loss'])))})")
    paths = {name: outdir / f"{name}.png" for name in PLOTS}
    plot_ranking(summary, seeds, reference, paths["ranking"])
    plot_subject_mae_paired(folds, subject_maes(preds).rename("mae").reset_index(), reference, paths["subject_mae_paired"])
    plot_cs_curves(summary, seeds, paths["cs_curves"])
    plot_predicted_vs_true(preds, paths["predicted_vs_true"])
    plot_mae_by_age_band(seeds, paths["mae_by_age_band"])
    plot_training_curves(history, paths["training_curves"], folds)
    return list(paths.values())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tables", required=True, help="folder with the tables of `ageest gather`")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.add_argument("--reference", default="softmax", help="reference loss (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    for path in make_plots(args.tables, args.out, args.reference):
        print(path)
    return 0
