"""ageest.stats against values computed by hand."""

import math

import pytest

from ageest import stats


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
