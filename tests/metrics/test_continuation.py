"""The continuation check's verdict (iwgan.metrics.continuation) on synthetic runs with
known answers: a run still improving in proportion to its learning rate passes the plateau
rule under the linear schedule and fails the continuation; a flat run passes both."""

import math

import numpy as np
import pandas as pd
import pytest

from iwgan.engine.config import lr_factor
from iwgan.metrics.continuation import (
    evaluation_iterations,
    extra_iterations,
    judge,
    lr_fraction,
    trends,
)
from iwgan.metrics.plateau import curve_every, plateau
from iwgan.metrics.plateau import evaluation_iterations as budget_iterations
from iwgan.metrics.verdicts import CONTINUATION

T = 5_000          # the converged profile's budget
FLOOR = 0.05       # a 500-point W1 noise floor of the order of the rings'
RATE = 2e-4        # W1 lost per iteration at the full learning rate


def test_the_stated_budget_rate_and_evaluations():
    assert extra_iterations(T) == 1_250 and lr_fraction() == CONTINUATION["lr_fraction"] == 0.1
    its = evaluation_iterations(T)
    assert its == [5_208, 5_417, 5_625, 5_833, 6_042, 6_250]
    assert len(evaluation_iterations(32)) == CONTINUATION["evaluations"]
    assert evaluation_iterations(4) == [5]   # one extra iteration: one evaluation


def improving_run(rate: float, w1_end: float = 0.1, hq: float = 80.0):
    """A run whose W1 falls by ``rate`` x its learning-rate factor every iteration: under
    the linear schedule to its budget, then at the continuation's constant rate. Its
    budget curve (16 evaluations) and its continuation's, the budget's end included."""
    def w1_at(t):   # closed form of w1_end + rate x (the rate left to train after t)
        if t <= T:
            return w1_end + rate * sum(lr_factor("linear", i, T) for i in range(t, T))
        return w1_end - rate * lr_fraction() * (t - T)
    budget = [{"iteration": it, "w1": w1_at(it), "hq_pct": hq}
              for it in budget_iterations(T, curve_every(T))]
    continued = [{"iteration": it, "w1": w1_at(it), "hq_pct": hq}
                 for it in evaluation_iterations(T)]
    return budget, [budget[-1], *continued]


def test_an_improving_run_passes_the_plateau_rule_under_the_linear_schedule():
    budget, continued = improving_run(RATE)
    old = plateau(budget, T, w1_floor=FLOOR)
    # the last quarter trains at <= 25 % of the rate: W1 moves by rate x T / 32, inside
    # 10 % of its level plus the noise floor
    assert old["converged"]
    trend = trends(continued, T)
    assert trend["continued_evaluations"] == 7
    assert trend["continued_w1_trend"] == pytest.approx(-RATE * 0.1 * 1_250, rel=1e-6)
    assert trend["continued_hq_trend"] == pytest.approx(0.0, abs=1e-9)
    # What the stated constants can see: the rule's window (the evaluations from 4,056 on,
    # at a rate factor <= 0.19) moved W1 by ~0.017; the continuation at a constant 0.1 x
    # for 1,250 iterations moves it by 0.025, about 1.5 x as far: the check's power over
    # the plateau rule comes mostly from its tolerance (the seeds' spread, not the floor).
    assert old["plateau_w1_change"] == pytest.approx(-0.0169, rel=0.01)
    assert trend["continued_w1_trend"] / old["plateau_w1_change"] == pytest.approx(1.48, 0.02)


def cell(trend: float, w1_sd: float = 0.01, seeds: int = 5, cell_key: str = "a", **row):
    """A cell of ``seeds`` runs whose final W1 spreads with s.d. ``w1_sd``, each with the
    continuation W1 trend ``trend``, and HQ % and modes that stay."""
    spread = np.linspace(-1, 1, seeds)
    w1 = 0.1 + (w1_sd * spread / np.std(spread, ddof=1) if seeds > 1 else 0 * spread)
    return pd.DataFrame([{"cell": cell_key, "seed": s, "status": "finished", "w1": w1[s],
                          "hq_pct": 80.0, "modes": 8, "continued_iterations": 1_250,
                          "continued_status": "finished", "continued_w1_trend": trend,
                          "continued_hq_trend": 0.5, "continued_modes": 8, **row}
                         for s in range(seeds)])


def test_the_continuation_fails_the_improving_run_and_passes_the_flat_one():
    _, continued = improving_run(RATE)
    improving = judge(cell(trends(continued, T)["continued_w1_trend"]))
    assert improving.continued_w1_allowed.tolist() == pytest.approx([0.01] * 5)
    assert improving.continued_converged.tolist() == [False] * 5
    _, flat = improving_run(0.0)
    flat_cell = judge(cell(trends(flat, T)["continued_w1_trend"]))
    assert flat_cell.continued_converged.tolist() == [True] * 5


def test_hq_tolerance_is_the_seeds_spread_with_a_floor_of_two_points():
    df = cell(0.0, continued_hq_trend=1.9)
    assert judge(df).continued_hq_allowed.tolist() == [2.0] * 5      # HQ s.d. 0 here
    assert judge(df).continued_converged.tolist() == [True] * 5
    assert judge(cell(0.0, continued_hq_trend=-2.1)).continued_converged.tolist() == [False] * 5
    spread = cell(0.0, continued_hq_trend=3.5)
    spread["hq_pct"] = [70.0, 75.0, 80.0, 85.0, 90.0]                   # s.d. 7.9
    out = judge(spread)
    assert out.continued_hq_allowed.iloc[0] == pytest.approx(np.std(spread.hq_pct, ddof=1))
    assert out.continued_converged.tolist() == [True] * 5


def test_a_mode_lost_or_gained_a_divergence_or_one_seed_decide_as_stated():
    df = cell(0.0)
    df.loc[0, "continued_modes"] = 7           # lost one
    df.loc[1, "continued_modes"] = 9           # gained one: the model still changed
    df.loc[2, "continued_status"] = "diverged"
    df.loc[3, "continued_w1_trend"] = math.nan  # too short a continuation, or no W1
    out = judge(df).continued_converged.tolist()
    assert out[:3] == [False, False, False] and pd.isna(out[3]) and out[4] is True
    alone = judge(cell(0.0, seeds=1)).continued_converged.tolist()
    assert len(alone) == 1 and pd.isna(alone[0])       # no spread to judge by


def test_cells_are_judged_by_their_own_spread_and_rows_without_the_check_are_empty():
    df = pd.concat([cell(0.015, w1_sd=0.01, cell_key="narrow"),
                    cell(0.015, w1_sd=0.02, cell_key="wide")], ignore_index=True)
    out = judge(df)
    assert out[out.cell == "narrow"].continued_converged.tolist() == [False] * 5
    assert out[out.cell == "wide"].continued_converged.tolist() == [True] * 5
    plain = judge(cell(0.0).drop(columns=["continued_iterations"]))
    assert plain.continued_converged.isna().all()
    # stopped early or diverged in the budget: not continued, not judged
    stopped = cell(0.0, continued_iterations=0, continued_status="not continued "
                   "(stopped_early)", continued_w1_trend=math.nan)
    assert judge(stopped).continued_converged.isna().all()


def test_trends_need_the_plateau_rules_minimum_of_evaluations():
    few = [{"iteration": it, "w1": 0.1, "hq_pct": 50.0} for it in (10, 11, 12)]
    assert math.isnan(trends(few, 10)["continued_w1_trend"])
    enough = [{"iteration": it, "w1": 0.1 + 0.01 * it, "hq_pct": 50.0} for it in range(9, 15)]
    out = trends(enough, 10)   # the point before the start is not the continuation's
    assert out["continued_evaluations"] == 5
    assert out["continued_w1_trend"] == pytest.approx(0.04)
