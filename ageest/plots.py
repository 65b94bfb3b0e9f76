"""Plots of the study's tables (from `ageest gather`): PNGs readable without the tables.

subject_mae_paired.png  per-subject MAE, each loss vs the reference (diagonal = equal)
cs_curves.png           cumulative score CS(θ) per loss
predicted_vs_true.png   predicted vs true age per loss
mae_by_age_band.png     MAE per 10-year age band per loss
training_curves.png     validation MAE per epoch across folds, mean ± sd band, per loss
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from .errors import AgeestError
from .io import atomic_path

PLOTS = ("subject_mae_paired", "cs_curves", "predicted_vs_true", "mae_by_age_band", "training_curves")


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
        return pd.read_csv(p, sep="\t")
    except FileNotFoundError:
        raise AgeestError(f"{p}: not found (run `ageest gather` first)") from None


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)


def method_order(names) -> list[str]:
    """Trained losses first (in the order given), then the baselines: every plot uses this order."""
    from .baselines import BASELINES

    names = list(dict.fromkeys(names))
    return [n for n in names if n not in BASELINES] + [b for b in BASELINES if b in names]


def method_style(names) -> dict[str, dict]:
    """One colour per method in every plot; baselines grey and dashed, so they read as references."""
    from .baselines import BASELINES

    import seaborn as sns

    order = method_order(names)
    trained = [n for n in order if n not in BASELINES]
    colours = dict(zip(trained, sns.color_palette("tab10", max(len(trained), 1))))
    greys = {"mean": "0.65", "ridge": "0.35"}
    out = {}
    for n in order:
        base = n in BASELINES
        out[n] = {"color": greys.get(n, "0.5") if base else colours[n], "ls": "--" if base else "-",
                  "label": f"{n} (baseline)" if base else n}
    return out


def _study_note(folds: pd.DataFrame) -> str:
    return f"LOPO, {folds['subject'].nunique()} subjects"


def plot_subject_mae_paired(folds: pd.DataFrame, reference: str, path: Path) -> None:
    plt, sns = _plt()
    wide = folds.pivot(index="subject", columns="loss", values="mae")
    others = [m for m in method_order(wide.columns) if m != reference]
    n = max(1, len(others))
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 5), squeeze=False)
    hi = float(wide.max().max()) * 1.05 if len(wide) else 1.0
    for ax, loss in zip(axes[0], others or [None]):
        ax.plot([0, hi], [0, hi], ls="--", color="grey", lw=1, label="equal MAE")
        if loss is not None:
            x, y = wide[reference], wide[loss]
            better = y < x
            ax.scatter(x[better], y[better], color="tab:green", s=28, label=f"{loss} better")
            ax.scatter(x[~better], y[~better], color="tab:red", s=28, label=f"{reference} better or tied")
            ax.set_title(f"Per-subject MAE: {loss} vs {reference}\n"
                         f"({int(better.sum())} of {len(wide)} subjects lower with {loss})")
            ax.set_ylabel(f"MAE with {loss} (years)")
        else:
            ax.set_title(f"Per-subject MAE: only the reference loss ({reference}) was run")
            ax.set_ylabel("MAE (years)")
        ax.set_xlabel(f"MAE with {reference} (years)")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_aspect("equal")
        # Below the axes: inside, it hid the points of high-MAE subjects.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize="small")
    fig.suptitle(f"Each point is one left-out subject ({_study_note(folds)})", y=1.02)
    _save(fig, path)


def plot_cs_curves(summary: pd.DataFrame, path: Path) -> None:
    plt, sns = _plt()
    cs_cols = sorted((c for c in summary.columns if c.startswith("cs_")), key=lambda c: int(c[3:]))
    long = summary.melt(id_vars="loss", value_vars=cs_cols, var_name="theta", value_name="cs")
    long["theta"] = long["theta"].str[3:].astype(int)
    long["cs"] *= 100
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for m, st in method_style(summary["loss"]).items():
        d = long[long["loss"] == m].sort_values("theta")
        ax.plot(d["theta"], d["cs"], marker="o", color=st["color"], ls=st["ls"], label=st["label"])
    ax.set_xlabel("Error level θ (years)")
    ax.set_ylabel("Cumulative score CS(θ) (% of test images)")
    ax.set_title("Cumulative score: share of test images with |error| ≤ θ")
    ax.set_ylim(0, 100)
    ax.set_xticks(sorted(long["theta"].unique()))
    ax.legend(title="Method")
    _save(fig, path)


def plot_predicted_vs_true(preds: pd.DataFrame, path: Path) -> None:
    plt, sns = _plt()
    styles = method_style(preds["loss"])
    losses = list(styles)
    preds = preds.assign(prediction=preds["age"] + preds["error"])  # the prediction gather scored
    hi = float(max(preds["age"].max(), preds["prediction"].max())) + 2
    fig, axes = plt.subplots(1, len(losses), figsize=(5 * len(losses), 5), squeeze=False, sharey=True)
    for ax, loss in zip(axes[0], losses):
        p = preds[preds["loss"] == loss]
        ax.plot([0, hi], [0, hi], ls="--", color="grey", lw=1, label="perfect prediction")
        ax.scatter(p["age"], p["prediction"], s=10, alpha=0.5, color=styles[loss]["color"], label="test image")
        mae = p["abs_error"].mean()
        ax.set_title(f"{styles[loss]['label']}: MAE {mae:.2f} years ({len(p)} images)")
        ax.set_xlabel("True age (years)")
        ax.set_ylabel("Predicted age (years)")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.legend(loc="upper left", fontsize="small")
    fig.suptitle("Predicted vs true age of every left-out test image", y=1.02)
    _save(fig, path)


def plot_mae_by_age_band(summary: pd.DataFrame, path: Path) -> None:
    plt, sns = _plt()
    band_cols = [c for c in summary.columns if c.startswith("mae_") and c[4:6].isdigit()]
    long = summary.melt(id_vars="loss", value_vars=band_cols, var_name="band", value_name="band_mae")
    long["band"] = long["band"].str[4:].str.replace("_", "–")
    counts = {c[2:].replace("_", "–"): int(summary[c].iloc[0]) for c in summary.columns
              if c.startswith("n_") and c[2:4].isdigit()}
    long["band"] = long["band"].map(lambda b: f"{b}\n(n={counts.get(b, 0)})")
    fig, ax = plt.subplots(figsize=(max(6.5, 1.1 * len(band_cols) + 2), 4.5))
    styles = method_style(summary["loss"])
    long["method"] = long["loss"].map(lambda m: styles[m]["label"])
    sns.barplot(data=long, x="band", y="band_mae", hue="method", ax=ax,
                hue_order=[st["label"] for st in styles.values()],
                palette={st["label"]: st["color"] for st in styles.values()})
    ax.set_xlabel("True age band (years; n = test images per method)")
    ax.set_ylabel("MAE (years)")
    ax.set_title("Mean absolute error by age band")
    ax.legend(title="Method")
    _save(fig, path)


def plot_training_curves(history: pd.DataFrame, path: Path, folds: pd.DataFrame | None = None) -> None:
    from matplotlib.ticker import MaxNLocator

    plt, sns = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    h = history.dropna(subset=["val_mae"]) if "val_mae" in history.columns else history.iloc[0:0]
    if len(h):
        names = list(h["loss"]) + (list(folds["loss"]) if folds is not None else [])
        styles = method_style(names)
        trained = [m for m in styles if m in set(h["loss"])]
        sns.lineplot(data=h, x="epoch", y="val_mae", hue="loss", hue_order=trained, errorbar="sd", marker="o",
                     palette={m: styles[m]["color"] for m in trained}, ax=ax)
        # The baselines have no epochs: their mean validation MAE over the same folds, as a level.
        for m in styles:
            if folds is not None and m not in trained:
                v = folds.loc[folds["loss"] == m, "val_mae"].mean()
                ax.axhline(v, color=styles[m]["color"], ls="--", lw=1.2, label=f"{styles[m]['label']}: {v:.1f}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(title="Method (mean ± sd over folds)", fontsize="small")
        ax.set_title(f"Validation MAE per epoch across {h.groupby(['loss', 'subject']).ngroups} fold runs")
    else:
        ax.set_title("Validation MAE per epoch: no training history recorded")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Validation MAE (years)")
    _save(fig, path)


def make_plots(tables: str | Path, outdir: str | Path, reference: str = "softmax") -> list[Path]:
    tables, outdir = Path(tables), Path(outdir)
    folds, summary = _read(tables, "folds"), _read(tables, "summary")
    preds, history = _read(tables, "predictions"), _read(tables, "history")
    if reference not in set(folds["loss"]):
        raise AgeestError(f"reference loss '{reference}' not in {tables / 'folds.tsv'} "
                          f"({', '.join(sorted(set(folds['loss'])))})")
    paths = {name: outdir / f"{name}.png" for name in PLOTS}
    plot_subject_mae_paired(folds, reference, paths["subject_mae_paired"])
    plot_cs_curves(summary, paths["cs_curves"])
    plot_predicted_vs_true(preds, paths["predicted_vs_true"])
    plot_mae_by_age_band(summary, paths["mae_by_age_band"])
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
