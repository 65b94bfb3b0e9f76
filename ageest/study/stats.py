"""Small pure statistics for the LOPO evaluation: MAE, cumulative score, age bands, paired tests.

Errors are `predicted - true` in years; "abs errors" are their absolute values. Paired differences
are `loss - reference`, so a negative difference means the loss is better (lower error).

The unit of a test matters: the ~1000 FG-NET test images come from 82 people, and images of one
person are not independent. Tests over subjects (one MAE difference per person: Wilcoxon, bootstrap
CI) treat people as the units; the image-weighted LOPO MAE difference gets a subject-clustered
bootstrap (`cluster_bootstrap`), which resamples people, never single images.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

TIE_TOLERANCE = 1e-9  # |difference| at or below this counts as a tie (years)


def _array(x: Iterable[float]) -> np.ndarray:
    return np.asarray(list(x) if not isinstance(x, np.ndarray) else x, dtype=float)


def mae(abs_errors: Iterable[float]) -> float:
    """Mean absolute error; NaN for no values."""
    a = _array(abs_errors)
    return float(np.abs(a).mean()) if a.size else math.nan


def cumulative_score(abs_errors: Iterable[float], thetas: Sequence[int] = range(11)) -> dict[int, float]:
    """CS(θ): the share of images whose absolute error is at most θ years, for each θ.

    The literature's CS counts integer predictions (Pan et al.'s and the mean-residue authors' code
    round the expected age first), so gather passes the errors of the rounded predictions: on
    unrounded ages CS(0) would be 0 and CS(θ) would be the literature's CS(θ - 0.5).
    """
    a = np.abs(_array(abs_errors))
    if not a.size:
        return {int(t): math.nan for t in thetas}
    return {int(t): float((a <= t + 1e-12).mean()) for t in thetas}


def age_band(age: int, width: int = 10) -> str:
    """The band label of an age: 0..9 -> '00_09', 10..19 -> '10_19' (width 10)."""
    lo = (int(age) // width) * width
    return f"{lo:02d}_{lo + width - 1:02d}"


def mae_by_band(ages: Iterable[int], abs_errors: Iterable[float], width: int = 10) -> dict[str, tuple[float, int]]:
    """{band label: (MAE, number of images)} for every band that has images, in age order."""
    ages_a, err = _array(ages), np.abs(_array(abs_errors))
    if ages_a.shape != err.shape:
        raise ValueError("ages and abs_errors differ in length")
    out: dict[str, tuple[float, int]] = {}
    for lo in sorted({(int(a) // width) * width for a in ages_a}):
        m = (ages_a >= lo) & (ages_a < lo + width)
        out[age_band(lo, width)] = (float(err[m].mean()), int(m.sum()))
    return out


def paired_counts(diffs: Iterable[float], tol: float = TIE_TOLERANCE) -> tuple[int, int, int]:
    """(improved, worse, tied) for differences `loss - reference` (negative = improved)."""
    d = _array(diffs)
    return int((d < -tol).sum()), int((d > tol).sum()), int((np.abs(d) <= tol).sum())


def wilcoxon_p(diffs: Iterable[float], tol: float = TIE_TOLERANCE) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (scipy).

    Zero differences are dropped before scipy sees them (Wilcoxon's convention), and so are those
    within `tol` (1e-9 years) of zero: two equal MAEs summed in another order differ by float noise,
    which is a tie, not a tiny win. scipy then tests the remaining n differences, exactly where
    n <= 50. `scipy.stats.wilcoxon` on the raw differences gives another p in two cases: where some
    difference is exactly zero, it may use the normal approximation instead (the 14 differences
    (0, .1, .2, -.3, .4, .5, .6, -.7, .8, .9, 1, 1.1, 1.2, 1.3): 0.0105 here, exact over the 13
    non-zero ones; 0.0131 from scipy on all 14); and where some |d| is in (0, tol], which it ranks
    as the smallest non-zero differences. With more than 50 non-zero differences (FG-NET's 82
    subjects) both use the approximation and agree but for the float-noise ties.
    With no non-zero difference there is no evidence of any difference: p = 1. NaN only for no pairs.
    """
    from scipy.stats import wilcoxon

    d = _array(diffs)
    if not d.size:
        return math.nan
    d = d[np.abs(d) > tol]
    if not d.size:
        return 1.0
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def bootstrap_ci(values: Iterable[float], n_boot: int = 10000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (e.g. per-subject MAE differences).

    Resamples units with replacement, `n_boot` times, from a seeded generator: same inputs and
    seed, same interval.
    """
    v = _array(values)
    if not v.size:
        return math.nan, math.nan
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    means = v[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def paired_comparison(loss_values: Iterable[float], ref_values: Iterable[float], *,
                      n_boot: int = 0, seed: int = 0) -> dict[str, float]:
    """Paired `loss - reference` on matched units (images or subjects).

    Returns n, mean_diff, wilcoxon_p, improved, worse, tied, and with n_boot > 0 ci_low/ci_high of
    the mean difference.
    """
    a, b = _array(loss_values), _array(ref_values)
    if a.shape != b.shape:
        raise ValueError("paired values differ in length")
    d = a - b
    improved, worse, tied = paired_counts(d)
    out: dict[str, float] = {
        "n": int(d.size),
        "mean_diff": float(d.mean()) if d.size else math.nan,
        "wilcoxon_p": wilcoxon_p(d),
        "improved": improved,
        "worse": worse,
        "tied": tied,
    }
    if n_boot > 0:
        out["ci_low"], out["ci_high"] = bootstrap_ci(d, n_boot=n_boot, seed=seed)
    return out


def cluster_bootstrap(diffs: Iterable[float], clusters: Iterable, n_boot: int = 10000, seed: int = 0,
                      level: float = 0.95) -> dict[str, float]:
    """Subject-clustered percentile bootstrap of the image-weighted mean difference.

    `diffs` are per-image differences (e.g. abs error of a loss minus that of the reference) and
    `clusters` the person each image belongs to. The estimate is the plain mean over all images
    (for abs-error differences: the difference of the two LOPO MAEs). Each of the `n_boot`
    resamples draws as many people as there are, with replacement (the draw of `bootstrap_ci`, on
    people sorted by id), and takes the mean difference over all images of the people drawn, each
    person counted as often as drawn: sum of their differences / number of their images.

    Any per-image values work alike: on absolute errors the estimate is the LOPO MAE and the
    interval its subject-clustered CI (gather's summary).

    Returns n_clusters, n, estimate, ci_low, ci_high (percentile interval at `level`) and p, the
    two-sided bootstrap p-value of "no difference": with k the smaller of #{resamples <= 0} and
    #{resamples >= 0} (0 within TIE_TOLERANCE), p = min(1, 2 (k + 1) / (n_boot + 1)). That is,
    about the smallest 1 - level whose percentile interval still excludes 0, counted so that p is
    never 0 (its floor is 2 / (n_boot + 1)); all differences zero give p = 1.
    """
    d = _array(diffs)
    c = np.asarray(list(clusters) if not isinstance(clusters, np.ndarray) else clusters)
    if d.shape != c.shape:
        raise ValueError("diffs and clusters differ in length")
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    if not d.size:
        return {"n_clusters": 0, "n": 0, "estimate": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                "p": math.nan}
    ids, inverse = np.unique(c, return_inverse=True)
    sums = np.bincount(inverse, weights=d, minlength=ids.size)
    counts = np.bincount(inverse, minlength=ids.size).astype(float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, ids.size, size=(n_boot, ids.size))
    boot = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    # Resampled means within TIE_TOLERANCE of 0 count as 0 (float sums of differences that cancel).
    k = min(int((boot <= TIE_TOLERANCE).sum()), int((boot >= -TIE_TOLERANCE).sum()))
    return {"n_clusters": int(ids.size), "n": int(d.size), "estimate": float(d.mean()),
            "ci_low": float(lo), "ci_high": float(hi), "p": min(1.0, 2 * (k + 1) / (n_boot + 1))}
