"""When a run has finished learning: the plateau rule, applied to its evaluation curve.

A run is **converged** when, over the last quarter of its training (the evaluations at
or after 3/4 of its iterations, at least ``MIN_EVALUATIONS`` of them), neither its exact
W1 nor its percentage of high-quality samples still moves: a least-squares line through
each metric over that window changes across the window by at most

    W1:    W1_REL x the window's mean W1 + the W1 noise floor of the curve's sample size
           (two real samples of that size are that far apart: a change below it is noise)
    HQ %:  HQ_ABS percentage points.

It says the run plateaued, not that it is good: a collapsed generator that no longer
changes is converged. Why a fitted line and not the first and last points: a single
evaluation's W1 and HQ % are noisy (500 and 2,500 samples), and the fit uses all of the
window's points. ``tests/metrics/test_plateau.py`` checks the rule on synthetic curves.
"""

from __future__ import annotations

import math

import numpy as np

from iwgan.engine.config import CURVE_POINTS  # evaluations a run records by default

MIN_EVALUATIONS = 4      # in the last quarter
WINDOW = 0.25            # the last quarter of training
W1_REL = 0.10            # W1 may drift by 10 % of its level ...
HQ_ABS = 5.0             # ... and HQ % by 5 points across the window
FD_REL = 0.10            # an image run's Fréchet distance may drift by 10 % of its level
                         # (plus the real-vs-real floor) ...
RECON_REL = 0.10         # ... and its reconstruction error by 10 %


def curve_every(iterations: int, points: int = CURVE_POINTS) -> int:
    """The evaluation period that gives a run ``points`` evaluations after 0."""
    return max(1, iterations // points)


def evaluation_iterations(iterations: int, every: int) -> list[int]:
    """The iterations a run evaluates at: 0, every ``every``, and the last."""
    return sorted({0, *range(every, iterations + 1, every), iterations})


def in_window(iterations: int, every: int) -> int:
    """How many of a run's evaluations fall in its last quarter."""
    start = (1 - WINDOW) * iterations
    return sum(it >= start for it in evaluation_iterations(iterations, every))


def check_assessable(iterations: int, points: int = CURVE_POINTS) -> None:
    """Refuse a budget whose curve of ``points`` evaluations cannot hold the rule's
    minimum in its last quarter, saying what would: more iterations, or (when more would
    not help) more points."""
    def enough(t: int, p: int) -> bool:
        return in_window(t, curve_every(t, p)) >= MIN_EVALUATIONS

    if enough(iterations, points):
        return
    n = in_window(iterations, curve_every(iterations, points))
    more = next((t for t in range(iterations + 1, iterations + 10 * CURVE_POINTS)
                 if enough(t, points)), None)
    denser = next((p for p in range(points + 1, iterations + 1) if enough(iterations, p)), None)
    fix = (f"use --iterations {more} or more" if more is not None else
           f"use --set curve_points={denser} or more" if denser is not None else
           f"use --iterations {4 * MIN_EVALUATIONS} or more and --set curve_points="
           f"{CURVE_POINTS}")
    raise ValueError(f"{iterations} iterations give {n} evaluation(s) in the last quarter; "
                     f"the convergence rule needs at least {MIN_EVALUATIONS}: {fix}")


def check_window(iterations: int, every: int) -> None:
    """The same for a curve evaluated every ``every`` iterations (--eval-every)."""
    n = in_window(iterations, every)
    if n < MIN_EVALUATIONS:
        raise ValueError(f"{iterations} iterations evaluated every {every} give {n} "
                         f"evaluation(s) in the last quarter; the convergence rule needs at "
                         f"least {MIN_EVALUATIONS}: lower --eval-every to at most "
                         f"{iterations // (4 * MIN_EVALUATIONS)} or raise --iterations")


def fitted_change(iterations, values) -> float:
    """The change across the window of a least-squares line through the points."""
    x, y = np.asarray(iterations, float), np.asarray(values, float)
    if np.ptp(x) == 0:
        return 0.0
    slope = np.polyfit(x, y, 1)[0]
    return float(slope * np.ptp(x))


def window_of(curve, iterations: int) -> list[dict]:
    """The curve's evaluations in the last quarter of ``iterations``."""
    rows = curve.to_dict("records") if hasattr(curve, "to_dict") else list(curve)
    return [r for r in rows if r["iteration"] >= (1 - WINDOW) * iterations]


def assessable(curve, iterations: int) -> bool:
    return len(window_of(curve, iterations)) >= MIN_EVALUATIONS


def settled(curve, iterations: int, limits: dict) -> dict:
    """The rule for any curve: ``limits`` maps a label to (metric, relative, absolute):
    over the last quarter of ``iterations`` a least-squares line through the metric may
    change by at most relative x its mean there + absolute. Converged when every metric
    stays within its limit."""
    window = window_of(curve, iterations)
    if len(window) < MIN_EVALUATIONS:
        raise ValueError(f"the last quarter of {iterations} iterations holds "
                         f"{len(window)} evaluation(s); the rule needs {MIN_EVALUATIONS}")
    its = [r["iteration"] for r in window]
    out, ok = {}, True
    for label, (metric, relative, absolute) in limits.items():
        values = [r[metric] for r in window]
        if not all(math.isfinite(v) for v in values):
            out.update({f"plateau_{label}_change": float("nan"),
                        f"plateau_{label}_allowed": float("nan")})
            ok = False
            continue
        change = fitted_change(its, values)
        allowed = relative * float(np.mean(values)) + absolute
        out.update({f"plateau_{label}_change": change, f"plateau_{label}_allowed": allowed})
        ok = ok and abs(change) <= allowed
    return {"converged": ok, **out, "plateau_evaluations": len(window)}


def image_limits(has_encoder: bool, fd_floor: float | None) -> dict:
    """The rule's limits for an image run: the Fréchet distance within FD_REL of its level
    plus the real-vs-real floor, and (a method with an encoder) the reconstruction error
    within RECON_REL."""
    limits = {"fd": ("fd", FD_REL, fd_floor if fd_floor is not None else 0.0)}
    if has_encoder:
        limits["recon"] = ("recon_error", RECON_REL, 0.0)
    return limits


def plateau(curve, iterations: int, w1_floor: float) -> dict:
    """Whether the mixture run of ``curve`` (rows with ``iteration``, ``w1``, ``hq_pct``;
    a DataFrame or a list of dicts) converged, with the numbers behind the verdict."""
    return settled(curve, iterations, {"w1": ("w1", W1_REL, w1_floor),
                                       "hq": ("hq_pct", 0.0, HQ_ABS)})
