"""The paper's claims, each with the one statistic, test and threshold that decides it,
written down as data (``RULES``) next to the functions that apply them; docs/verdicts.md
and the reports print the same table, so the prose cannot drift from the rule.

Every verdict is a family of one-sided tests, one per mixture, in the direction the paper
claims; Holm's correction keeps the chance that any of them passes by luck at most
``ALPHA`` when the claim is false. A mixture **holds** when its Holm-adjusted p-value is
below ``ALPHA``, **fails** when the test in the opposite direction is (the data say the
contrary), and is **undecided** otherwise. The verdict:

    reproduced           every mixture holds
    partly reproduced    at least one holds
    not reproduced       none holds (the detail says how many fail)
    not run here         no result to judge, with the reason

So when the claim is false, "not reproduced" comes out with probability at least
1 - ALPHA (``tests/metrics/test_verdicts.py`` simulates it). Each verdict names its axis
(iterations, generator updates, training seconds, or the end of training), its seeds and
its protocol. The functions here take per-run numbers (pandas frames or arrays) and read
no file: ``iwgan.reporting.verdicts`` gathers them from results/.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from iwgan.metrics.statistics import (
    Estimate,
    check_direction,
    gaussian_mmd2,
    holm,
    mean_estimate,
    mmd2,
    welch,
)

ALPHA = 0.05
CLAIMED, AGAINST, UNDECIDED = "holds", "fails", "undecided"
REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_RUN = ("reproduced", "partly reproduced",
                                               "not reproduced", "not run here")


@dataclass(frozen=True)
class Rule:
    """One claim of the paper and how it is judged."""

    claim: str          # C1 ... C7
    title: str
    paper: str          # what the paper says, and where
    statistic: str      # the one number per run (or per pair of runs) that decides
    test: str
    threshold: str      # when a mixture holds, in words
    null: float         # the value the test is against (0 for a difference)
    direction: str      # "greater" or "less": the direction the paper claims
    axis: str
    beside: str         # what is reported beside it, without deciding
    evidence: str       # the report that holds it


RULES = {r.claim: r for r in (
    Rule("C1", "No mode collapse",
         "\"Our experiments do not experience any mode collapse problem\" (Sec. 1); against "
         "WGAN-GP, iWGAN \"avoids the appearance of mode collapse\" (Sec. 5.1, Fig. 2)",
         "modes covered at the end of training (3-std protocol, 2,500 samples): iWGAN's "
         "mean over seeds minus the baseline's, per mixture",
         "one-sided Welch t over seeds, Holm across the mixtures of one preset",
         "Holm-adjusted p < 0.05 for more modes than the baseline",
         0.0, "greater", "end of training",
         "HQ % and KL with Welch intervals; runs covering all K modes (Wilson interval); "
         "collapsed runs; runs that lose a mode after covering all; degraded_late runs; "
         "every baseline, each its own Holm family",
         "mode_coverage.md"),
    Rule("C2", "Faster convergence",
         "\"iWGAN surpasses the performance of the WGAN-GP at very early stage\" (Sec. 5.1, "
         "same structure, learning rate and critic steps); \"speeds up the convergence\" "
         "(abstract)",
         "mean of log W1 over the curve on [0, h] (area under the log-W1 curve by the "
         "trapezoid rule / h; h the shorter of the two methods' curves on the axis): "
         "iWGAN minus WGAN-GP, per mixture",
         "one-sided Welch t over seeds, Holm across mixtures, separately on each axis",
         "Holm-adjusted p < 0.05 for a lower mean log W1",
         0.0, "less", "iterations; generator updates; training seconds (one verdict each)",
         "W1 at 20 % of training (the old statistic), for reference",
         "convergence.md"),
    Rule("C3", "The duality gap tracks convergence",
         "\"as the duality gap converges to 0, our model converges to the true "
         "distribution\"; the gap is \"a measure of convergence\" (Sec. 2, 5.1)",
         "within one iWGAN run, the partial Spearman correlation of the eq. (4) gap "
         "estimate and W1 over the evaluations, controlling for the iteration: what the "
         "gap says about W1 beyond elapsed training",
         "one-sided t over seeds that the mean partial correlation exceeds 0, Holm "
         "across mixtures",
         "Holm-adjusted p < 0.05 for a partial correlation above 0",
         0.0, "greater", "iterations (every evaluation of the run)",
         "the raw correlation and that of -iteration with W1; final gap against final W1 "
         "across seeds; runs whose final gap is below the mixture's W1 threshold (2 x "
         "the real-vs-real floor; Wilson interval); the estimate's dependence on its "
         "inner steps (`convergence --final-gap-steps`, tabulated where run)",
         "convergence.md"),
    Rule("C4", "The latent space is close to N(0, I)",
         "\"the joint distribution of any two dimensions of Q(X) is close to a bivariate "
         "normal distribution\" (Sec. 5.1, Fig. 3)",
         "per run, the mean over the 10 pairs of dimensions (i, j) of the IMQ MMD^2 of "
         "(Q_i, Q_j) on 500 codes against 500 draws of N(0, I_2)",
         "one-sided t over seeds that the mean is below the margin, Holm across mixtures",
         "Holm-adjusted p < 0.05 for a value below the margin: the exact MMD^2 between "
         "N(0, I_2) and N(0, 0.9^2 I_2), the larger of the two 10 % scale errors",
         float("nan"), "less", "end of training",
         "the worst pair; the exact MMD^2 of N(0, 1.1^2 I) and of a 0.25 shift in every "
         "coordinate, and a perfect encoder's spread at n = 500; the 5-D MMD of the "
         "results against the 5-D references; ALI and alpha-GAN",
         "convergence.md"),
    Rule("C5", "The quality score tells good samples from bad",
         "\"quality scores of samples near the modes ... are close to 1, and become "
         "smaller as the sample draw is away from the modes\"; \"a reliable metric for "
         "the individual sample quality\" (Sec. 5.1, Fig. 4)",
         "per run, the AUROC of exp(-||x - G(Q(x))||) separating 1,000 mixture draws "
         "from 1,000 points uniform over the mixture's box",
         "one-sided t over seeds that the mean AUROC exceeds 0.9, Holm across mixtures",
         "Holm-adjusted p < 0.05 for an AUROC above 0.9",
         0.9, "greater", "end of training",
         "the same score of alpha-GAN and ALI (their reconstruction error), iWGAN minus "
         "each by Welch t with Holm across mixtures: whether the score is iWGAN's or any "
         "autoencoder's",
         "convergence.md"),
    Rule("C6", "CelebA FID",
         "FID 69.28 for iWGAN against 94.49 for WGAN-GP (Appendix G)",
         "FID (pytorch-fid, 10,000 samples against the CelebA test split): iWGAN minus "
         "WGAN-GP, per seed",
         "one-sided Welch t over seeds",
         "p < 0.05 for a lower FID (one family: a single dataset)",
         0.0, "less", "end of training (the paper's budget)",
         "the published values; each method's FID with its interval",
         "celeba.md"),
    Rule("C7", "The MNIST figures",
         "samples, reconstructions, interpolations, the latent pairs and the quality "
         "ranking on MNIST (Fig. 5, Appendix F); \"a competitive and stable performance\" "
         "(abstract)",
         "FID of iWGAN's samples minus 1.1 x WGAN-GP's (means over seeds), with the "
         "figures beside",
         "one-sided Welch t over seeds (non-inferiority: the figures show no number, so "
         "iWGAN may be no more than 10 % worse than WGAN-GP)",
         "p < 0.05 for an FID below 1.1 x WGAN-GP's",
         0.0, "less", "end of training (the paper's budget)",
         "reconstruction error and code spread; the digits stand-in (8x8 digits at "
         "28x28, FD on a small CNN), which is not MNIST",
         "mnist.md"),
)}

# The run-level flags, written down before the runs that will be judged by them.
COLLAPSE = {"hq_pct_below": 5.0, "modes_below_fraction_of_k": 0.5}
DEGRADED_LATE = {"window": 0.5, "hq_drop_points": 10.0, "modes_held_evaluations": 2}
# The continuation check (docs/verdicts.md states how it decides; applied by
# iwgan.metrics.continuation, run by --continue-check).
CONTINUATION = {"extra_fraction": 0.25, "lr_fraction": 0.1, "evaluations": 6,
                "w1_tolerance_seed_sds": 1.0, "hq_tolerance_seed_sds": 1.0,
                "hq_tolerance_min_points": 2.0}
# The seeds of a decisive campaign: the largest number of runs per group that a deciding
# comparison (C1 modes, C2 on each axis) needs for 80 % power at its observed effect, for
# the effects in the claimed direction of at least a large standardised size (|d| >= 0.8),
# rounded up to a multiple of 10, within [10, 40]; smaller effects are named as not powered.
POWER = {"power": 0.8, "alpha": ALPHA, "sided": 1, "family": 3, "min_effect_d": 0.8,
         "round_to": 10, "min_seeds": 10, "max_seeds": 40,
         "deciding": ["C1 modes covered", "C2 mean log W1, iterations",
                      "C2 mean log W1, generator updates", "C2 mean log W1, training seconds"]}
NON_INFERIORITY = 1.1         # C7: iWGAN's FID may exceed WGAN-GP's by at most 10 %
LATENT_MARGIN_SIGMA = 0.9      # the margin of C4: a 10 % scale error (the larger of 0.9, 1.1)
LATENT_REFERENCES = {"N(0, 0.9² I)": (0.9, 0.0), "N(0, 1.1² I)": (1.1, 0.0),
                     "N(0.25·1, I)": (1.0, 0.25)}
# The literature by equivalence: our mean minus the published mean, with its 95 % t
# interval over seeds, against a margin stated before the runs it judges (docs/verdicts.md).
# A margin is what no reader would call a different result: one mode, ten points of HQ %,
# 0.15 of KL (PacGAN's GAN and PacGAN2 differ by 0.38 on the ring).
EQUIVALENCE_MARGINS = {"modes": 1.0, "hq_pct": 10.0, "kl": 0.15}
AGREES, BELOW, ABOVE, INCONCLUSIVE = "agrees", "below", "above", "inconclusive"


def equivalence(interval: tuple[float, float], margin: float) -> str:
    """The verdict of a difference's interval (ours - published) against the margin +- m:
    **agrees** when it lies inside [-m, m], **below** when it lies entirely below -m,
    **above** when entirely above m, else (or with no interval: one seed) **inconclusive**."""
    lo, hi = interval
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    if -margin <= lo and hi <= margin:
        return AGREES
    if hi < -margin:
        return BELOW
    if lo > margin:
        return ABOVE
    return INCONCLUSIVE


def literature_difference(values, published: float) -> Estimate:
    """Our mean over seeds minus a published mean, with the t standard error of ours (the
    published mean is taken as a fixed number: most sources give no spread)."""
    e = mean_estimate(values)
    return Estimate(e.value - published, e.se, e.df, e.n)


def seeds_per_cell(rows: list[dict]) -> tuple[int, list[dict]]:
    """The seeds per cell of a decisive campaign by ``POWER``'s rule, from power rows
    (comparison, mixture, effect_size_d, in_claimed_direction, runs_per_group_verdict);
    and the deciding rows it leaves unpowered."""
    powered, unpowered = [], []
    for r in rows:
        if r["comparison"] not in POWER["deciding"] or not r["in_claimed_direction"]:
            continue
        d = r["effect_size_d"]
        n = r["runs_per_group_verdict"]
        if n is not None and d is not None and abs(d) >= POWER["min_effect_d"]:
            powered.append(n)
        else:
            unpowered.append(r)
    need = max(powered, default=POWER["min_seeds"])
    step = POWER["round_to"]
    seeds = min(POWER["max_seeds"], max(POWER["min_seeds"], step * math.ceil(need / step)))
    return seeds, unpowered


# ---------------------------------------------------------------------------------------
# Deciding a family of tests
# ---------------------------------------------------------------------------------------

@dataclass
class Unit:
    """One test of a verdict's family: a mixture."""

    name: str
    estimate: Estimate
    p: float                 # one-sided, in the claim's direction
    p_reverse: float         # one-sided, against it
    p_holm: float = float("nan")
    p_reverse_holm: float = float("nan")
    outcome: str = UNDECIDED
    groups: dict = field(default_factory=dict)   # method -> Estimate of its own mean


@dataclass
class Verdict:
    claim: str
    verdict: str
    units: list[Unit]
    axis: str
    protocol: str
    seeds: list[int]
    runs: str                      # how many runs per cell, in words
    method: str = "iwgan"
    against: str | None = None     # the baseline of a comparison
    null: float = 0.0              # the threshold the units were tested against
    direction: str = "greater"
    reason: str = ""               # why not run, or a caveat
    details: list[str] = field(default_factory=list)
    statistic: str = ""            # a label when it is not the rule's own statistic

    @property
    def rule(self) -> Rule:
        return RULES[self.claim]

    def count(self, outcome: str) -> int:
        return sum(u.outcome == outcome for u in self.units)


def decide(estimates: dict[str, Estimate], null: float, direction: str,
           alpha: float = ALPHA) -> tuple[str, list[Unit]]:
    """The verdict of a family of one-sided t tests (one ``Estimate`` per mixture) of
    H0: estimate <= null (``greater``) or >= null (``less``), Holm-corrected."""
    check_direction(direction)
    reverse = "less" if direction == "greater" else "greater"
    units = [Unit(name, e, e.p_value(null, direction), e.p_value(null, reverse))
             for name, e in estimates.items()]
    for key in ("p", "p_reverse"):
        for unit, adjusted in zip(units, holm([getattr(u, key) for u in units])):
            setattr(unit, f"{key}_holm", adjusted)
    for u in units:
        u.outcome = (CLAIMED if u.p_holm < alpha else AGAINST if u.p_reverse_holm < alpha
                     else UNDECIDED)
    held = sum(u.outcome == CLAIMED for u in units)
    verdict = (NOT_REPRODUCED if held == 0 or not units else
               REPRODUCED if held == len(units) else PARTLY)
    return verdict, units


def seeds_of(runs: pd.DataFrame) -> list[int]:
    return sorted({int(s) for s in runs["seed"]})


def protocol_of(runs: pd.DataFrame) -> str:
    """The runs' protocol (``identical``: every method with the paper's shared settings,
    the only protocol results recorded before the column existed)."""
    if "protocol" not in runs:
        return "identical"
    values = sorted(set(runs["protocol"].fillna("identical")))
    return ", ".join(values)


def runs_text(runs: pd.DataFrame, methods) -> str:
    counts = runs[runs.method.isin(methods)].groupby(["method", "mixture"]).size()
    low, high = (int(counts.min()), int(counts.max())) if len(counts) else (0, 0)
    per = f"{low}" if low == high else f"{low}-{high}"
    return f"{per} runs per method and mixture"


def by_mixture(runs: pd.DataFrame, order) -> list[str]:
    present = set(runs["mixture"])
    return [m for m in order if m in present] + sorted(present - set(order))


def difference_verdict(groups: dict, direction: str,
                       alpha: float = ALPHA) -> tuple[str, list[Unit]]:
    """The verdict on ``groups`` (mixture -> (method's per-run values, baseline's)): one
    Welch test per mixture of the difference of means in ``direction``, Holm across."""
    return decide({m: welch(a, b) for m, (a, b) in groups.items()}, 0.0, direction, alpha)


def threshold_verdict(groups: dict, null: float, direction: str,
                      alpha: float = ALPHA) -> tuple[str, list[Unit]]:
    """The verdict on ``groups`` (mixture -> per-run values) against ``null``: one t test
    per mixture of the mean in ``direction``, Holm across."""
    return decide({m: mean_estimate(v) for m, v in groups.items()}, null, direction, alpha)


def compare_methods(runs: pd.DataFrame, column: str, claim: str, *, axis: str,
                    mixtures, method: str = "iwgan", baseline: str = "wgan_gp",
                    direction: str | None = None, statistic: str = "") -> Verdict:
    """``method`` against ``baseline`` on the per-run ``column`` (rows: method, mixture,
    seed): :func:`difference_verdict` in the rule's direction (or ``direction``)."""
    direction = direction or RULES[claim].direction
    values = {key: g[column].to_numpy(float)
              for key, g in runs.groupby(["mixture", "method"], sort=False)}
    groups = {m: (values[m, method], values[m, baseline]) for m in by_mixture(runs, mixtures)
              if (m, method) in values and (m, baseline) in values}
    verdict, units = difference_verdict(groups, direction)
    for u in units:
        a, b = groups[u.name]
        u.groups = {method: mean_estimate(a), baseline: mean_estimate(b)}
    both = runs[runs.method.isin([method, baseline])]
    return Verdict(claim, verdict, units, axis, protocol_of(both), seeds_of(both),
                   runs_text(both, [method, baseline]), method, baseline, 0.0, direction,
                   statistic=statistic)


def against_threshold(runs: pd.DataFrame, column: str, claim: str, *, axis: str, mixtures,
                      method: str = "iwgan", null: float | None = None,
                      statistic: str = "") -> Verdict:
    """``method``'s per-run ``column`` against the rule's threshold (or ``null``):
    :func:`threshold_verdict` in the rule's direction."""
    rule = RULES[claim]
    null = rule.null if null is None else null
    runs = runs[runs.method == method]
    groups = {m: g[column].to_numpy(float)
              for m, g in runs.groupby("mixture", sort=False)}
    groups = {m: groups[m] for m in by_mixture(runs, mixtures)}
    verdict, units = threshold_verdict(groups, null, rule.direction)
    for u in units:
        u.groups = {method: u.estimate}
    return Verdict(claim, verdict, units, axis, protocol_of(runs), seeds_of(runs),
                   runs_text(runs, [method]), method, None, null, rule.direction,
                   statistic=statistic)


def not_run(claim: str, reason: str) -> Verdict:
    return Verdict(claim, NOT_RUN, [], RULES[claim].axis, "none", [], "no runs",
                   reason=reason)


# ---------------------------------------------------------------------------------------
# C1: run-level flags
# ---------------------------------------------------------------------------------------

def collapsed(modes, hq_pct, k: int):
    """A collapsed run: fewer than half of the K modes, or under 5 % of its samples high
    quality (``COLLAPSE``)."""
    modes, hq = np.asarray(modes, float), np.asarray(hq_pct, float)
    return (hq < COLLAPSE["hq_pct_below"]) | (modes < COLLAPSE["modes_below_fraction_of_k"] * k)


def success(modes, k: int):
    """A successful run: all K modes covered at the end of training."""
    return np.asarray(modes, float) >= k


def seeds_split(modes, hq_pct, k: int) -> bool:
    """The cell's seeds split: some runs succeed (all K modes) and some collapse, so its
    mean describes no run and its success rate (with a Wilson interval) is the number to
    read."""
    return bool(success(modes, k).any() and collapsed(modes, hq_pct, k).any())


def mode_lost_after_coverage(curve: pd.DataFrame, k: int) -> bool:
    """The run covered all K modes at some evaluation and fewer at its last one (``curve``:
    one run's rows with ``iteration`` and ``modes``)."""
    c = curve.sort_values("iteration")
    return bool((c.modes >= k).any() and c.modes.iloc[-1] < k)


def degraded_late(curve: pd.DataFrame) -> bool:
    """Over the last half of training the run was better than at its end: its HQ % was
    more than 10 points above its final HQ %, or it covered more modes than at the end
    at two or more evaluations (one evaluation could be a mode with a single sample)."""
    c = curve.sort_values("iteration")
    last = c.iloc[-1]
    late = c[c.iteration >= (1 - DEGRADED_LATE["window"]) * c.iteration.max()]
    hq_drop = late.hq_pct.max() - last.hq_pct > DEGRADED_LATE["hq_drop_points"]
    more_modes = int((late.modes > last.modes).sum()) >= DEGRADED_LATE["modes_held_evaluations"]
    return bool(hq_drop or more_modes)


FLAG_COLUMNS = ("collapsed", "mode_lost", "degraded_late")   # each mixture run's row


def curve_table(curves: pd.DataFrame, metrics=("modes", "hq_pct")) -> pd.DataFrame:
    """Long curves (run_id, iteration, metric, value) as one row per run and iteration."""
    c = curves[curves.metric.isin(metrics)]
    return c.pivot_table(index=["run_id", "iteration"], columns="metric",
                         values="value").reset_index()


def run_flags(curve, modes: float, hq_pct: float, k: int) -> dict:
    """A mixture run's flags (``FLAG_COLUMNS``) from its modes and HQ % at the end of
    training and its curve (records or a frame with ``iteration``, ``modes``,
    ``hq_pct``): what its row records, and what every table counts. NaN where the run has
    no such number (it diverged; its curve has no mode counts)."""
    c = pd.DataFrame(curve)
    final = math.isfinite(modes) and math.isfinite(hq_pct)
    traced = (len(c) > 0 and {"iteration", "modes", "hq_pct"} <= set(c.columns)
              and bool(c[["modes", "hq_pct"]].notna().all().all()))
    return {"collapsed": bool(collapsed(modes, hq_pct, k)) if final else math.nan,
            "mode_lost": mode_lost_after_coverage(c, k) if traced else math.nan,
            "degraded_late": degraded_late(c) if traced else math.nan}


# ---------------------------------------------------------------------------------------
# C2: the whole-curve statistic
# ---------------------------------------------------------------------------------------

def mean_log(x, y, horizon: float):
    """(1 / h) * integral over [0, h] of log y(x), y linear in log between the evaluations
    (trapezoid rule); the curve must start at 0 and reach h. ``y`` may hold several curves
    on the same ``x`` (one per row): then one value per row."""
    x = np.asarray(x, float)
    order = np.argsort(x)
    x, logy = x[order], np.log(np.asarray(y, float))[..., order]
    if not (horizon > 0 and x[0] <= 0 <= x[-1] and x[-1] >= horizon):
        raise ValueError(f"the curve spans {x[0]:g} to {x[-1]:g}, not [0, {horizon:g}]")
    inside = x <= horizon
    grid, values = x[inside], logy[..., inside]
    if grid[-1] < horizon:   # the horizon falls between two evaluations: interpolate
        j = int(np.searchsorted(x, horizon))
        w = (horizon - x[j - 1]) / (x[j] - x[j - 1])
        grid = np.append(grid, horizon)
        end = (1 - w) * logy[..., j - 1] + w * logy[..., j]
        values = np.concatenate([values, np.asarray(end)[..., None]], axis=-1)
    area = np.sum((values[..., 1:] + values[..., :-1]) / 2 * np.diff(grid), axis=-1)
    return area / horizon if np.ndim(area) else float(area) / horizon


def value_at_fraction(x, y, fraction: float) -> float:
    """y at the evaluation nearest ``fraction`` of the curve's span (the old early-W1
    statistic)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(y[np.abs(x - fraction * x.max()).argmin()])


# ---------------------------------------------------------------------------------------
# C4: the latent space
# ---------------------------------------------------------------------------------------

PAIRS = [(i, j) for i in range(5) for j in range(i + 1, 5)]


def pair_mmd2(codes: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The IMQ MMD^2 of every pair of dimensions (Q_i, Q_j) against ``prior`` (n, 2) draws
    of N(0, I_2), in the order of ``PAIRS`` for 5 dimensions."""
    codes = np.asarray(codes, float)
    dims = codes.shape[1]
    return np.array([mmd2(codes[:, [i, j]], prior)
                     for i in range(dims) for j in range(i + 1, dims)])


def latent_margin() -> float:
    """C4's margin: the exact MMD^2 between N(0, I_2) and the farther of the two 10 %
    scale errors."""
    return max(gaussian_mmd2(2, LATENT_MARGIN_SIGMA), gaussian_mmd2(2, 2 - LATENT_MARGIN_SIGMA))

