"""ageest.study.stats against values computed by hand."""

import math

import numpy as np
import pytest

from ageest.study import stats


def test_mae():
    assert stats.mae([1, -3, 2]) == pytest.approx(2.0)
    assert math.isnan(stats.mae([]))


def test_cumulative_score():
    cs = stats.cumulative_score([0, 0.5, 1, 2.5, 11], thetas=[0, 1, 2, 3, 10])
    # |e| <= 0: 1 of 5; <= 1: 3; <= 2: 3; <= 3: 4; <= 10: 4
    assert cs == {0: 0.2, 1: 0.6, 2: 0.6, 3: 0.8, 10: 0.8}
    assert stats.cumulative_score([-1.0], thetas=[1]) == {1: 1.0}  # absolute value taken


def test_age_band():
    assert stats.age_band(0) == "00_09"
    assert stats.age_band(9) == "00_09"
    assert stats.age_band(10) == "10_19"
    assert stats.age_band(69) == "60_69"
    assert stats.age_band(7, width=5) == "05_09"


def test_mae_by_band():
    out = stats.mae_by_band([3, 5, 12, 45], [1.0, 3.0, 2.0, 4.0])
    assert out == {"00_09": (2.0, 2), "10_19": (2.0, 1), "40_49": (4.0, 1)}
    assert list(out) == ["00_09", "10_19", "40_49"]  # age order, only bands with images


def test_paired_counts():
    assert stats.paired_counts([-1.0, 0.0, 2.0, -0.5, 0.0]) == (2, 1, 2)


def test_wilcoxon_p_exact_small_sample():
    # Differences 1, 2, 3 all positive: ranks 1, 2, 3, W- = 0; exact two-sided p = 2 / 2^3 = 0.25.
    assert stats.wilcoxon_p([1.0, 2.0, 3.0]) == pytest.approx(0.25)
    # Four same-sign differences: p = 2 / 16.
    assert stats.wilcoxon_p([-4.0, -1.0, -2.0, -3.0]) == pytest.approx(0.125)


def test_wilcoxon_p_ties_and_empty():
    assert stats.wilcoxon_p([0.0, 0.0]) == 1.0  # no evidence of any difference
    assert math.isnan(stats.wilcoxon_p([]))
    # Zeros are dropped: same as the test on the non-zero differences alone.
    assert stats.wilcoxon_p([0.0, 1.0, 2.0, 3.0]) == pytest.approx(0.25)


def test_bootstrap_ci_constant_and_seeded():
    assert stats.bootstrap_ci([2.0, 2.0, 2.0], n_boot=200) == (2.0, 2.0)
    a = stats.bootstrap_ci([1.0, -2.0, 3.0, 0.5], n_boot=500, seed=7)
    b = stats.bootstrap_ci([1.0, -2.0, 3.0, 0.5], n_boot=500, seed=7)
    assert a == b
    lo, hi = a
    # Bootstrap means lie between the smallest and largest value; the CI brackets the mean 0.625.
    assert -2.0 <= lo <= 0.625 <= hi <= 3.0


def test_bootstrap_ci_two_values():
    # Resampling {0, 1} twice: means 0 (p 1/4), 0.5 (1/2), 1 (1/4) -> 95% percentile CI is [0, 1].
    assert stats.bootstrap_ci([0.0, 1.0], n_boot=4000, seed=1) == (0.0, 1.0)


def test_paired_comparison():
    out = stats.paired_comparison([1.0, 2.0, 5.0], [2.0, 2.0, 3.0], n_boot=100, seed=0)
    # Differences -1, 0, +2.
    assert out["n"] == 3
    assert out["mean_diff"] == pytest.approx(1 / 3)
    assert (out["improved"], out["worse"], out["tied"]) == (1, 1, 1)
    # Non-zero differences -1, +2: ranks 1, 2; W = min(1, 2) = 1; exact p = 1.0 for n = 2.
    assert out["wilcoxon_p"] == pytest.approx(1.0)
    assert out["ci_low"] <= out["mean_diff"] <= out["ci_high"]
    with pytest.raises(ValueError):
        stats.paired_comparison([1.0], [1.0, 2.0])


# --- against scipy ---------------------------------------------------------------------------


def test_wilcoxon_p_drops_zeros_and_float_noise_before_scipy():
    from scipy.stats import wilcoxon

    # One exact zero among 14: tested exactly over the 13 non-zero differences, where scipy on the
    # raw 14 takes the normal approximation (0.0131).
    d = [0.0, .1, .2, -.3, .4, .5, .6, -.7, .8, .9, 1.0, 1.1, 1.2, 1.3]
    assert stats.wilcoxon_p(d) == pytest.approx(wilcoxon(d[1:], method="exact").pvalue)
    assert stats.wilcoxon_p(d) == pytest.approx(0.010498, abs=1e-6)
    assert wilcoxon(d).pvalue == pytest.approx(0.0131, abs=1e-4)
    # Float noise of two equal MAEs is a tie, not the smallest win: dropped like an exact zero.
    noisy = [1e-12, -1e-12, 1, -2, 3, 4, -5, 6, 7, 8]
    assert stats.wilcoxon_p(noisy) == pytest.approx(wilcoxon(noisy[2:]).pvalue)
    assert stats.wilcoxon_p(noisy) != pytest.approx(wilcoxon(noisy).pvalue)


def test_wilcoxon_p_matches_scipy():
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(3)
    for n in (5, 12, 40, 82):  # exact distribution for small n, normal approximation for large
        d = rng.normal(0.3, 1.0, n)
        assert stats.wilcoxon_p(d) == pytest.approx(wilcoxon(d).pvalue, rel=1e-12)


def test_subject_bootstrap_ci_matches_scipy():
    from scipy.stats import bootstrap

    d = np.random.default_rng(4).normal(-0.5, 2.0, 30)
    ours = stats.bootstrap_ci(d, n_boot=2000, seed=11)
    ref = bootstrap((d,), np.mean, n_resamples=2000, method="percentile", vectorized=True,
                    rng=np.random.default_rng(11)).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high), rel=1e-12)


def _clustered_data():
    """Uneven subjects (1 to 9 images), per-image differences with a subject effect."""
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 10, 25)
    subjects = np.repeat(np.arange(100, 125), sizes)
    effect = rng.normal(-0.4, 1.0, 25)
    diffs = np.repeat(effect, sizes) + rng.normal(0, 2.0, subjects.size)
    order = rng.permutation(subjects.size)  # images of one subject need not be adjacent
    return diffs[order], subjects[order]


def test_cluster_bootstrap_matches_scipy_on_subjects():
    # scipy resamples the subjects (paired: their difference sums and image counts together) with
    # the same generator draw; statistic: image-weighted mean of the people drawn.
    from scipy.stats import bootstrap

    diffs, subjects = _clustered_data()
    ours = stats.cluster_bootstrap(diffs, subjects, n_boot=3000, seed=9)
    ids = np.unique(subjects)
    sums = np.array([diffs[subjects == s].sum() for s in ids])
    counts = np.array([(subjects == s).sum() for s in ids], dtype=float)
    ref = bootstrap((sums, counts), lambda s, n, axis=-1: s.sum(axis) / n.sum(axis), paired=True,
                    n_resamples=3000, method="percentile", vectorized=True, rng=np.random.default_rng(9))
    assert (ours["ci_low"], ours["ci_high"]) == pytest.approx(
        (ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-12)
    assert ours["estimate"] == pytest.approx(diffs.mean())
    assert (ours["n_clusters"], ours["n"]) == (25, diffs.size)
    # The p-value from the same resamples, counted directly.
    boot = ref.bootstrap_distribution
    k = min((boot <= 0).sum(), (boot >= 0).sum())
    assert ours["p"] == pytest.approx(2 * (k + 1) / 3001)


def test_cluster_bootstrap_matches_a_direct_resampling_loop():
    diffs, subjects = _clustered_data()
    ours = stats.cluster_bootstrap(diffs, subjects, n_boot=500, seed=2)
    ids = sorted(set(subjects))
    draws = np.random.default_rng(2).integers(0, len(ids), size=(500, len(ids)))
    means = []
    for row in draws:  # the people drawn, each with all of their images, repeats included
        picked = np.concatenate([diffs[subjects == ids[j]] for j in row])
        means.append(picked.mean())
    assert (ours["ci_low"], ours["ci_high"]) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])),
                                                            rel=1e-12)


# --- by hand ---------------------------------------------------------------------------------


def test_cluster_bootstrap_two_subjects_by_hand():
    # Subject 1: two images, differences -1, -1 (sum -2); subject 2: one image, +4. A resample of
    # two people is {1, 1}: mean -1 (p 1/4), {2, 2}: +4 (1/4), or {1, 2}: (-2 + 4) / 3 = 2/3 (1/2).
    # 95% percentile CI [-1, 4]; resamples <= 0 about 1/4 of them, so p is about 2 * 1/4 = 0.5.
    out = stats.cluster_bootstrap([-1.0, 4.0, -1.0], [1, 2, 1], n_boot=4000, seed=1)
    assert out["estimate"] == pytest.approx(2 / 3)  # image-weighted: (-1 - 1 + 4) / 3
    assert (out["ci_low"], out["ci_high"]) == (-1.0, 4.0)
    assert out["p"] == pytest.approx(0.5, abs=0.04)
    # Per image the same differences would look like 3 independent units; clustered, only 2 are.
    assert (out["n_clusters"], out["n"]) == (2, 3)


def test_cluster_bootstrap_equal_subjects_collapse_to_a_point():
    # Every subject's images differ by -2: every resample has mean -2, the CI is that point, and
    # no resample reaches 0: p is at its floor 2 / (n_boot + 1).
    out = stats.cluster_bootstrap([-2.0] * 7, [1, 1, 2, 3, 3, 3, 4], n_boot=999, seed=0)
    assert (out["estimate"], out["ci_low"], out["ci_high"]) == (-2.0, -2.0, -2.0)
    assert out["p"] == pytest.approx(2 / 1000)
    zero = stats.cluster_bootstrap([0.0, 0.0, 0.0], [1, 2, 2], n_boot=100)
    assert (zero["ci_low"], zero["ci_high"], zero["p"]) == (0.0, 0.0, 1.0)


def test_cluster_bootstrap_resamples_people_not_images():
    # 2 people, 50 images each, each person's images all alike (-1 and +1). Per image the CI would
    # be narrow around 0; people resampled, a resample is -1, 0 or +1: the CI spans [-1, 1].
    diffs = [-1.0] * 50 + [1.0] * 50
    out = stats.cluster_bootstrap(diffs, [1] * 50 + [2] * 50, n_boot=2000, seed=0)
    assert (out["ci_low"], out["ci_high"]) == (-1.0, 1.0)
    per_image = stats.bootstrap_ci(diffs, n_boot=2000, seed=0)
    assert per_image[1] - per_image[0] < 0.5


def test_cluster_bootstrap_seeded_and_checked():
    diffs, subjects = _clustered_data()
    assert stats.cluster_bootstrap(diffs, subjects, n_boot=300, seed=4) == \
        stats.cluster_bootstrap(diffs, subjects, n_boot=300, seed=4)
    assert math.isnan(stats.cluster_bootstrap([], [])["ci_low"])
    with pytest.raises(ValueError):
        stats.cluster_bootstrap([1.0, 2.0], [1])
