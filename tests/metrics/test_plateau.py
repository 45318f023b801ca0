"""The convergence (plateau) rule on synthetic curves with known answers."""

import numpy as np
import pytest

from iwgan.metrics.plateau import (
    HQ_ABS,
    MIN_EVALUATIONS,
    check_assessable,
    curve_every,
    evaluation_iterations,
    in_window,
    plateau,
)

T = 1600


def curve(w1, hq, noise=0.0, seed=0):
    """17 evaluations (0, 100, ..., 1600) of the functions w1(t), hq(t), t in [0, 1]."""
    rng = np.random.default_rng(seed)
    its = evaluation_iterations(T, curve_every(T))
    return [{"iteration": it, "w1": w1(it / T) * (1 + noise * rng.normal()),
             "hq_pct": hq(it / T) + 100 * noise * rng.normal()} for it in its]


def test_the_curve_has_16_points_after_0_and_4_in_the_last_quarter():
    its = evaluation_iterations(T, curve_every(T))
    assert len(its) == 17 and its[-1] == T
    assert sum(it >= 0.75 * T for it in its) == MIN_EVALUATIONS + 1


def test_a_flat_curve_with_noise_has_converged():
    out = plateau(curve(lambda t: 0.3, lambda t: 60.0, noise=0.02), T, w1_floor=0.01)
    assert out["converged"] and out["plateau_evaluations"] == 5


def test_a_curve_that_settles_early_has_converged():
    out = plateau(curve(lambda t: 0.2 + np.exp(-12 * t), lambda t: 80 * (1 - np.exp(-12 * t))),
                  T, w1_floor=0.01)
    assert out["converged"]


def test_w1_still_falling_is_not_converged():
    out = plateau(curve(lambda t: 1.0 - 0.6 * t, lambda t: 50.0), T, w1_floor=0.01)
    # Over the last quarter W1 falls by 0.15 against an allowance of 10 % of ~0.48 + 0.01.
    assert not out["converged"]
    assert out["plateau_w1_change"] == pytest.approx(-0.15, rel=1e-6)


def test_hq_still_rising_is_not_converged():
    out = plateau(curve(lambda t: 0.3, lambda t: 40 * t), T, w1_floor=0.01)
    assert not out["converged"] and out["plateau_hq_change"] == pytest.approx(10.0)
    assert out["plateau_hq_change"] > HQ_ABS


def test_a_change_below_the_w1_noise_floor_is_noise():
    # W1 near the floor, falling by 0.02 in the last quarter: 10 % of 0.05 allows 0.005,
    # the floor of 0.03 the rest.
    out = plateau(curve(lambda t: 0.1 - 0.08 * t, lambda t: 90.0), T, w1_floor=0.03)
    assert out["converged"]
    assert not plateau(curve(lambda t: 0.1 - 0.08 * t, lambda t: 90.0), T, 0.0)["converged"]


def test_a_diverged_curve_is_not_converged():
    c = curve(lambda t: 0.3, lambda t: 60.0)
    c[-1]["w1"] = float("nan")
    assert not plateau(c, T, 0.01)["converged"]


def test_too_few_evaluations_are_refused():
    with pytest.raises(ValueError, match="needs 4"):
        plateau(curve(lambda t: 0.3, lambda t: 60.0)[:-2], T, 0.01)
    with pytest.raises(ValueError, match="use --iterations 12 or more"):
        check_assessable(10)
    check_assessable(12)
    check_assessable(20_000)


def test_a_curve_of_32_points_puts_twice_the_evaluations_in_the_window():
    assert in_window(5000, curve_every(5000, 32)) == 9      # 3,750 ... 4,992, and 5,000
    assert in_window(5000, curve_every(5000)) == 5
    check_assessable(24, points=32)
    with pytest.raises(ValueError, match="use --iterations"):
        check_assessable(10, points=32)


def test_too_few_curve_points_for_any_budget_is_refused_naming_the_number_that_works():
    with pytest.raises(ValueError, match="use --set curve_points=9 or more"):
        check_assessable(5000, points=8)
    check_assessable(5000, points=9)
