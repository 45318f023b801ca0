"""The continuation check (docs/verdicts.md, "The continuation check"): a plateau that is the
model's, not the learning-rate schedule's.

After its budget (and after the budget's final evaluation and checkpoint, which stay the
run's results), a run trains ``CONTINUATION["extra_fraction"]`` of its iterations more at
a **constant** rate of ``CONTINUATION["lr_fraction"]`` x its recipe's base rate (its moving
average kept), evaluated ``CONTINUATION["evaluations"]`` times spread evenly over the
continuation; :func:`trends` gives the least-squares change of W1 and HQ % across the
continuation's curve (its start, the budget's last evaluation, included).

The tolerances come from the seed-to-seed spread of the run's cell, so the verdict
(:func:`judge`) is a function of a results table, not of one run: it is computed when the
table is read, never stored in a row, so that adding seeds cannot leave a stale flag
behind. A run **stays converged** when, over the continuation,

    |W1 trend|   <= w1_tolerance_seed_sds x s.d. over the cell's seeds of the final W1
    |HQ % trend| <= max(hq_tolerance_seed_sds x s.d. of the final HQ %, hq_tolerance_min_points)
    modes covered at the continuation's end == modes covered at the budget's end

(the modes on the budget's own evaluation draws: common random numbers, so a change is
the model's). A run that diverged during the continuation did not stay; a cell with one
seed, or a run whose continuation curve is too short or has no W1, is not judged (NaN).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from iwgan.engine.records import TRAINED
from iwgan.metrics.plateau import MIN_EVALUATIONS, fitted_change
from iwgan.metrics.verdicts import CONTINUATION

NAN = float("nan")


def extra_iterations(iterations: int) -> int:
    """The continuation's length for a budget of ``iterations`` (at least 1)."""
    return max(1, round(CONTINUATION["extra_fraction"] * iterations))


def lr_fraction() -> float:
    """The continuation's constant rate as a fraction of the recipe's base rate."""
    return float(CONTINUATION["lr_fraction"])


def evaluation_iterations(iterations: int) -> list[int]:
    """The iterations the continuation evaluates at: ``evaluations`` of them spread evenly
    over (iterations, iterations + extra], the last at its end (fewer where the
    continuation has fewer iterations)."""
    extra, n = extra_iterations(iterations), CONTINUATION["evaluations"]
    return sorted({iterations + max(1, round(j * extra / n)) for j in range(1, n + 1)})


def trends(records, start: int) -> dict:
    """The change across the continuation of a least-squares line through W1 and through
    HQ % of the curve ``records`` (dicts with ``iteration``, ``w1``, ``hq_pct``) from
    iteration ``start`` (the budget's last evaluation) on; NaN where fewer than the
    plateau rule's minimum of evaluations fall there or a value is not finite."""
    window = [r for r in records if r["iteration"] >= start]
    out = {"continued_evaluations": len(window)}
    for metric, label in (("w1", "continued_w1_trend"), ("hq_pct", "continued_hq_trend")):
        values = [r[metric] for r in window]
        ok = len(window) >= MIN_EVALUATIONS and all(math.isfinite(v) for v in values)
        out[label] = fitted_change([r["iteration"] for r in window], values) if ok else NAN
    return out


def judge(df: pd.DataFrame, w1: str = "w1", hq: str = "hq_pct",
          modes: str = "modes") -> pd.DataFrame:
    """The continuation verdict of every row of a results table that ran the check:
    ``continued_w1_allowed``, ``continued_hq_allowed`` (the tolerances from the spread over
    the seeds of the row's ``cell`` of the budget's final ``w1`` and ``hq``) and
    ``continued_converged`` (True, False, or NaN where it cannot be judged; NaN too for a
    row that did not run the check). ``w1``, ``hq``, ``modes``: the columns of the budget's
    final metrics (the convergence table's are ``final_w1``, ...)."""
    out = df.copy()
    for column in ("continued_w1_allowed", "continued_hq_allowed", "continued_converged"):
        out[column] = NAN
    out["continued_converged"] = out["continued_converged"].astype(object)
    if "continued_iterations" not in df or df.empty:
        return out
    trained = df.status.isin(TRAINED)
    spread = df[trained].groupby("cell")[[w1, hq]].std(ddof=1)
    w1_sd = df.cell.map(spread[w1])
    hq_sd = df.cell.map(spread[hq])
    out["continued_w1_allowed"] = CONTINUATION["w1_tolerance_seed_sds"] * w1_sd
    out["continued_hq_allowed"] = np.maximum(
        CONTINUATION["hq_tolerance_seed_sds"] * hq_sd, CONTINUATION["hq_tolerance_min_points"]
    ).where(hq_sd.notna())
    for i, row in out.iterrows():
        out.at[i, "continued_converged"] = verdict(row, modes)
    return out


def verdict(row, modes: str = "modes"):
    """One row's verdict, its tolerances filled in (:func:`judge`)."""
    if pd.isna(row.get("continued_iterations")):
        return NAN
    if row.get("continued_status") == "diverged":
        return False
    numbers = [row.get(k) for k in ("continued_w1_trend", "continued_hq_trend",
                                    "continued_w1_allowed", "continued_hq_allowed",
                                    "continued_modes", modes)]
    if any(pd.isna(v) for v in numbers):
        return NAN
    w1_trend, hq_trend, w1_allowed, hq_allowed, after, before = numbers
    return bool(abs(w1_trend) <= w1_allowed and abs(hq_trend) <= hq_allowed
                and after == before)
