"""The statistics behind the verdicts, on closed forms and known answers."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from iwgan.core.losses import mmd_imq
from iwgan.metrics.quality import mmd_permutation_test
from iwgan.metrics.statistics import (
    Estimate,
    correlation_interval,
    correlation_p,
    gaussian_mmd2,
    holm,
    mean_estimate,
    mmd2,
    partial_spearman,
    runs_per_group,
    welch,
    welch_power,
    wilson,
)


def test_welch_matches_scipys_unequal_variance_t_test():
    a, b = [3.1, 2.7, 4.0, 3.6, 2.9], [2.0, 2.2, 1.1, 2.9]
    e = welch(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert e.value == pytest.approx(np.mean(a) - np.mean(b))
    assert e.df == pytest.approx(ref.df)
    assert e.p_value(0.0, "greater") == pytest.approx(ref.pvalue)
    assert e.p_value(0.0, "less") == pytest.approx(1 - ref.pvalue)
    lo, hi = e.interval(0.95)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((ci.low, ci.high))


def test_the_mean_has_the_one_sample_t_interval_and_test():
    v = [0.91, 0.88, 0.95, 0.97, 0.90]
    e = mean_estimate(v)
    assert e.interval(0.9) == pytest.approx(stats.t.interval(0.9, 4, np.mean(v),
                                                             stats.sem(v)))
    ref = stats.ttest_1samp(v, 0.9, alternative="greater").pvalue
    assert e.p_value(0.9, "greater") == pytest.approx(ref)


def test_runs_without_spread_are_certain_and_too_few_runs_are_unknown():
    same = welch([8, 8, 8], [8, 8, 8])
    assert same.p_value(0, "greater") == 1.0 and same.interval() == (0.0, 0.0)
    apart = welch([25, 25, 25], [19, 19, 19])
    assert apart.p_value(0, "greater") == 0.0 and apart.p_value(0, "less") == 1.0
    assert math.isnan(welch([1.0], [2.0, 3.0]).p_value())
    assert math.isnan(mean_estimate([]).value)
    with pytest.raises(ValueError, match="direction"):
        Estimate(1, 1, 3, (4,)).p_value(0, "bigger")


def test_holm_on_a_textbook_example_keeps_order_and_ignores_missing_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    out = holm([0.02, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == 0.04


def test_wilson_interval_closed_forms():
    z2 = stats.norm.ppf(0.975) ** 2
    assert wilson(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))
    lo, hi = wilson(10, 10)
    assert (lo, hi) == pytest.approx((10 / (10 + z2), 1.0))
    lo, hi = wilson(6, 15)
    assert lo < 6 / 15 < hi and (lo + hi) / 2 == pytest.approx((6 + z2 / 2) / (15 + z2))
    with pytest.raises(ValueError):
        wilson(11, 10)


def test_partial_spearman_removes_what_the_third_variable_explains():
    rng = np.random.default_rng(0)
    z = rng.normal(size=5000)
    x, y = z + rng.normal(size=5000), z + rng.normal(size=5000)
    assert abs(partial_spearman(x, y, z)) < 0.05          # x and y share only z
    assert stats.spearmanr(x, y).statistic > 0.4
    w = rng.normal(size=5000)
    assert partial_spearman(w + 0.1 * rng.normal(size=5000), w, z) > 0.9


def test_correlation_p_and_interval():
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    r = stats.spearmanr(x, y)
    assert correlation_p(r.statistic, 30) == pytest.approx(r.pvalue)
    lo, hi = correlation_interval(r.statistic, 30)
    assert -1 < lo < r.statistic < hi < 1


def test_the_power_calculation_gives_the_textbook_17_runs_for_d_1():
    # Two-sample t, d = 1, two-sided 5 %, 80 % power: 17 per group (G*Power, Cohen).
    assert runs_per_group(1.0, 1.0, 1.0, 0.05, 0.8, sided=2) == 17
    assert welch_power(1.0, 1.0, 1.0, 17, 0.05, 2) >= 0.8 > welch_power(1.0, 1.0, 1.0, 16,
                                                                         0.05, 2)
    assert runs_per_group(0.0, 1.0, 1.0, 0.05) is None
    assert runs_per_group(1.0, 0.0, 0.0, 0.05) is None


def test_the_power_calculation_agrees_with_a_simulation():
    n = runs_per_group(0.5, 0.4, 0.8, 0.05 / 3, 0.8, sided=1)
    rng = np.random.default_rng(2)
    a = 0.5 + 0.4 * rng.standard_normal((4000, n))
    b = 0.8 * rng.standard_normal((4000, n))
    p = stats.ttest_ind(a, b, axis=1, equal_var=False, alternative="greater").pvalue
    rate = float((p < 0.05 / 3).mean())
    assert 0.77 < rate < 0.86


def test_mmd2_is_the_training_penalty_and_the_permutation_tests_statistic():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 5)), rng.normal(size=(150, 5)) * 1.2
    value = mmd2(x, y)
    assert value == pytest.approx(float(mmd_imq(torch.as_tensor(x), torch.as_tensor(y))),
                                  rel=1e-9)
    test = mmd_permutation_test(x, y, torch.Generator().manual_seed(0), permutations=1)
    assert value == pytest.approx(test["latent_mmd"], rel=1e-9)


@pytest.mark.parametrize("dim,sigma,shift", [(2, 0.9, 0.0), (2, 1.0, 0.25), (5, 1.1, 0.0)])
def test_the_exact_gaussian_mmd_is_what_the_estimate_averages_to(dim, sigma, shift):
    rng = np.random.default_rng(4)
    draws = [mmd2(sigma * rng.standard_normal((400, dim)) + shift,
                  rng.standard_normal((400, dim))) for _ in range(30)]
    exact = gaussian_mmd2(dim, sigma, shift)
    assert abs(np.mean(draws) - exact) < 3 * np.std(draws, ddof=1) / np.sqrt(30)


def test_the_exact_gaussian_mmd_is_0_at_the_prior_and_grows_with_the_distortion():
    assert gaussian_mmd2(2, 1.0, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert 0 < gaussian_mmd2(2, 1.0, 0.1) < gaussian_mmd2(2, 1.0, 0.25)
    assert 0 < gaussian_mmd2(5, 1.1) < gaussian_mmd2(5, 1.2)
