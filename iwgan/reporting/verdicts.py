"""The verdicts of iwgan.metrics.verdicts, computed from results/: the per-run numbers each
rule needs (final modes, curves on three axes, the gap and W1 over training, the codes Q(X)
of results/convergence_artifacts/, the outlier AUROC), the verdicts, their Markdown, and
the power calculation behind the seeds a decisive campaign needs
(results/verdicts/power.json, ``python -m iwgan power``)."""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from iwgan.core.methods import METHOD_NAMES
from iwgan.data.mixtures import MIXTURES, get_mixture
from iwgan.engine.records import read_curves, read_results
from iwgan.files import atomic_write_text
from iwgan.metrics import verdicts as rules
from iwgan.metrics.statistics import (
    correlation_interval,
    correlation_p,
    gaussian_mmd2,
    mean_estimate,
    null_mmd2_sd,
    partial_spearman,
    runs_per_group,
    spearman,
    welch,
    welch_power,
    wilson,
)
from iwgan.metrics.verdicts import (
    AGAINST,
    CLAIMED,
    FLAG_COLUMNS,
    LATENT_REFERENCES,
    NON_INFERIORITY,
    POWER,
    RULES,
    Verdict,
    against_threshold,
    compare_methods,
    curve_table,
    latent_margin,
    mean_log,
    not_run,
    pair_mmd2,
    seeds_per_cell,
    value_at_fraction,
)
from iwgan.reporting.common import (
    AXES,
    flag_values,
    identical,
    markdown_table,
    methods_with,
    on_three_axes,
    ordered,
    reference_profile,
    trained,
    updates_per_iteration,
)

PRIOR_SEED = 20_240          # the N(0, I_2) draws every run's codes are compared with
POWER_FILE = Path("verdicts") / "power.json"


# ---------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------

def num(x, digits: int = 3, sign: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def pval(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def interval_text(estimate, digits: int = 3, sign: bool = False) -> str:
    lo, hi = estimate.interval()
    return (f"{num(estimate.value, digits, sign)} "
            f"[{num(lo, digits, sign)}, {num(hi, digits, sign)}]")


def seeds_text(seeds: list[int]) -> str:
    if not seeds:
        return "none"
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def verdict_heading(v: Verdict) -> str:
    rule = v.rule
    what = (f" against {v.against}" if v.against else
            f" for {v.method}" if v.method != "iwgan" else "")
    stat = f", {v.statistic}" if v.statistic else ""
    return f"**{v.claim} {rule.title}{what}{stat} — {v.verdict}**"


def outcome_counts(v: Verdict) -> str:
    return (f"holds on {v.count(CLAIMED)} of {len(v.units)} mixtures, fails on "
            f"{v.count(AGAINST)}")


def verdict_markdown(v: Verdict, digits: int = 3) -> list[str]:
    """A verdict as a headline, its context (axis, protocol, seeds) and a table of its
    family: each mixture's estimate with its 95 % interval, the Holm-adjusted one-sided
    p-value and the outcome."""
    if v.verdict == rules.NOT_RUN:
        return [f"- {verdict_heading(v)}: {v.reason}", ""]
    direction = ">" if v.direction == "greater" else "<"
    test = (f"difference {v.method} − {v.against} {direction} 0" if v.against else
            f"{v.method} {direction} {v.null:.4g}")
    head = (f"- {verdict_heading(v)} ({outcome_counts(v)}; test: {test}, one-sided t, "
            f"Holm across mixtures at {rules.ALPHA:g}). Axis: {v.axis}. Protocol: "
            f"`{v.protocol}`. Seeds {seeds_text(v.seeds)} ({v.runs}).")
    if v.reason:
        head += f" {v.reason}"
    rows = []
    for u in v.units:
        row = {"mixture": u.name}
        for method, e in u.groups.items():
            row[method] = interval_text(e, digits)
        if v.against:
            row[f"{v.method} − {v.against}"] = interval_text(u.estimate, digits, sign=True)
        row["p (Holm)"] = pval(u.p_holm)
        row["p against (Holm)"] = pval(u.p_reverse_holm)
        row["outcome"] = u.outcome
        rows.append(row)
    out = [head, ""]
    if rows:
        out += ["  " + line for line in markdown_table(pd.DataFrame(rows)).splitlines()]
        out.append("")
    out += [f"  {d}" for d in v.details]
    return out + ([""] if v.details else [])


def rules_markdown() -> str:
    """The rules table, as docs/verdicts.md and the scorecard print it."""
    rows = [{"claim": f"{r.claim} {r.title}", "the paper": r.paper, "statistic": r.statistic,
             "test": r.test, "a mixture holds when": r.threshold, "axis": r.axis,
             "reported beside, not deciding": r.beside} for r in RULES.values()]
    return markdown_table(pd.DataFrame(rows).map(escape_cell))


def escape_cell(text) -> str:
    """A Markdown table cell: a literal | would end the cell."""
    return str(text).replace("|", "\\|")


def anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lstrip("#").strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def verdicts_heading(profile: str, preset: str, protocol: str, budget: str = "") -> str:
    return f"### Verdicts ({profile} profile, {preset} preset, {protocol} protocol{budget})"


# What makes two runs of one profile and preset the same budget: under the identical
# protocol every method shares the recipe too (n_critic aside: a method that takes one
# step per iteration does not read it); under the tuned one each has its own.
BUDGET = ("iterations", "width", "batch_size")
RECIPE = ("lr", "lr_schedule", "ema")


def by_protocol(df: pd.DataFrame):
    """(protocol, budget label, rows) for each protocol of ``df`` (rows recorded before the
    column existed are ``identical``) and each budget in it, the budget with the most runs
    first; the label is empty when there is one budget. Verdicts never pool protocols or
    budgets."""
    column = (df["protocol"].fillna("identical") if "protocol" in df
              else pd.Series("identical", index=df.index))
    for protocol in ordered(column, ["identical", "tuned"]):
        runs = df[column == protocol]
        keys = [c for c in (*BUDGET, *(RECIPE if protocol == "identical" else ()))
                if c in runs]
        if not keys:
            yield protocol, "", runs
            continue
        key = pd.Series([" ".join(map(str, t)) for t in runs[keys].itertuples(index=False)],
                        index=runs.index)
        groups = sorted(runs.groupby(key, sort=True), key=lambda kv: -len(kv[1]))
        for _, g in groups:
            first = g.iloc[0]
            label = "" if len(groups) == 1 else ", " + ", ".join(
                f"{c} {first[c]:,}" if c == "iterations" else f"{c} {first[c]}"
                for c in keys if len({str(v) for v in runs[c]}) > 1)
            yield protocol, label, g


# ---------------------------------------------------------------------------------------
# C1: mode collapse
# ---------------------------------------------------------------------------------------

C1_COLUMNS = {"mode_coverage": {"modes": "modes", "hq_pct": "hq_pct", "kl": "kl"},
              "convergence": {"final_modes": "modes", "final_hq_pct": "hq_pct",
                              "final_kl": "kl"}}


def end_of_training(runs: pd.DataFrame) -> str:
    """The axis of an end-of-training comparison: the budget in iterations and, per
    method, in generator updates (which differ: iWGAN takes n_critic G steps an
    iteration)."""
    its = sorted({int(i) for i in runs.iterations})
    text = f"end of training ({', '.join(f'{i:,}' for i in its)} iterations"
    if "n_critic" in runs:
        updates = {m: sorted({int(i) * updates_per_iteration(m, int(n))
                              for i, n in zip(g.iterations, g.n_critic)})
                   for m, g in runs.groupby("method", sort=False)}
        text += "; generator updates: " + ", ".join(
            f"{m} {'/'.join(f'{u:,}' for u in updates[m])}"
            for m in ordered(runs.method, METHOD_NAMES))
    return text + ")"


def c1_runs(runs: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The rows of ``kind``'s results with the columns C1 reads, and each run's K."""
    out = trained(runs).rename(columns=C1_COLUMNS[kind]).copy()
    out["k"] = [get_mixture(m, p).n_modes for m, p in zip(out.mixture, out.preset)]
    return out


def one_model_per_spiral(runs: pd.DataFrame, preset: str) -> tuple[pd.DataFrame, str]:
    """The literature preset has no spiral of its own: its spiral runs are the paper
    preset's models, counted once (under the paper preset)."""
    if preset != "paper" and "spiral" in set(runs.mixture):
        return runs[runs.mixture != "spiral"], ("The spiral is left out: under this preset "
                                                "it is the paper preset's model, counted "
                                                "there.")
    return runs, ""


C1_BESIDE = (("hq_pct", "HQ % (beside)", "greater", 1),
             ("kl", "KL of the HQ histogram (beside; a run with no HQ sample has none)",
              "less", 3))


def c1_verdicts(runs: pd.DataFrame, preset: str) -> list[tuple[Verdict, int]]:
    """(verdict, digits): iWGAN against every baseline on modes (the deciding statistic),
    then HQ % and KL against WGAN-GP (reported beside)."""
    runs, note = one_model_per_spiral(runs, preset)
    axis = end_of_training(runs)
    out = []
    for baseline in [m for m in ordered(runs.method, METHOD_NAMES) if m != "iwgan"]:
        out.append((compare_methods(runs, "modes", "C1", axis=axis, mixtures=MIXTURES,
                                    baseline=baseline, statistic="modes covered"), 1))
    if "wgan_gp" in set(runs.method):
        out += [(compare_methods(runs, column, "C1", axis=axis, mixtures=MIXTURES,
                                 direction=direction, statistic=label), digits)
                for column, label, direction, digits in C1_BESIDE]
    for v, _ in out:
        v.reason = note
    return out


def run_flags(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: all K modes at the end, and the flags its row records (``FLAG_COLUMNS``,
    iwgan.metrics.verdicts.run_flags; NaN: not known, e.g. a row recorded before the flags
    existed that ``migrate-flags`` has not filled)."""
    out = runs[["run_id", "method", "mixture", "seed", "k", "modes", "hq_pct"]].copy()
    out["all_modes"] = rules.success(out.modes, out.k)
    for column in FLAG_COLUMNS:
        out[column] = flag_values(runs[column]) if column in runs else np.nan
    return out


def share(flags: pd.Series) -> str:
    """"k/n [Wilson 95 %]" of a boolean column (NaN: not known)."""
    known = flags.dropna().astype(bool)
    n, k = len(known), int(known.sum())
    if n == 0:
        return "n/a"
    lo, hi = wilson(k, n)
    return f"{k}/{n} [{100 * lo:.0f}, {100 * hi:.0f} %]"


def all_modes_counts(flags: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """method -> (runs with all K modes at the end, runs)."""
    return {m: (int(g.all_modes.sum()), len(g))
            for m, g in flags.groupby("method", sort=False)}


def flags_table(flags: pd.DataFrame) -> str:
    rows = []
    for mixture in ordered(flags.mixture, MIXTURES):
        for method in ordered(flags.method, METHOD_NAMES):
            f = flags[(flags.mixture == mixture) & (flags.method == method)]
            if f.empty:
                continue
            split = rules.seeds_split(f.modes, f.hq_pct, f.k.iloc[0])
            rows.append({"mixture": mixture, "method": method, "runs": len(f),
                         "all K modes at the end": share(f.all_modes),
                         "collapsed": share(f.collapsed),
                         "lost a mode after covering all": share(f.mode_lost),
                         "degraded_late": share(f.degraded_late),
                         "seeds split": "yes" if split else ""})
    return markdown_table(pd.DataFrame(rows))


def c1_section(runs: pd.DataFrame, preset: str) -> list[str]:
    """C1's verdicts and its run-level flags, for one profile and preset."""
    out = []
    for v, digits in c1_verdicts(runs, preset):
        out += verdict_markdown(v, digits)
    flags = run_flags(runs)
    counts = all_modes_counts(flags)
    summary = "; ".join(f"{m} {k}/{n} [{100 * wilson(k, n)[0]:.0f}, "
                        f"{100 * wilson(k, n)[1]:.0f} %]"
                        for m in ordered(flags.method, METHOD_NAMES)
                        for k, n in [counts[m]])
    out += [f"Runs covering all K modes at the end, over the mixtures: {summary} (Wilson "
            "95 % intervals).", "",
            "Run-level flags, pre-stated in docs/verdicts.md: *collapsed* (HQ < "
            f"{rules.COLLAPSE['hq_pct_below']:g} % or fewer than K/2 modes at the end), "
            "*lost a mode after covering all* (all K modes at some evaluation, fewer at the "
            "last), *degraded_late* (over the last half of training, HQ % more than "
            f"{rules.DEGRADED_LATE['hq_drop_points']:g} points above the final one, or more "
            "modes than at the end at two or more evaluations); shares with Wilson 95 % "
            "intervals. *Seeds split*: the cell has both runs with all modes and collapsed "
            "runs, so its mean describes no run and the success rate is the number to read.",
            "", flags_table(flags), ""]
    return out


# ---------------------------------------------------------------------------------------
# C2: speed, on three axes
# ---------------------------------------------------------------------------------------

def axis_curves(runs: pd.DataFrame, curves: pd.DataFrame, metric: str = "w1") -> dict:
    """run_id -> {axis: x, "y": values} of ``metric``'s curve on each axis."""
    out = {}
    c = on_three_axes(curves[curves.metric == metric], runs)
    for run_id, g in c.groupby("run_id"):
        g = g.sort_values("iteration")
        out[run_id] = {"iterations": g.iteration.to_numpy(float),
                       "updates": g.updates.to_numpy(float),
                       "seconds": g.seconds.to_numpy(float), "y": g.value.to_numpy(float)}
    return out


def speed_statistics(runs: pd.DataFrame, curves: pd.DataFrame, axis: str,
                     methods=("iwgan", "wgan_gp")) -> tuple[pd.DataFrame, dict]:
    """Per run, the mean log W1 on [0, h] of ``axis``, h per mixture the shortest curve of
    ``methods`` on that axis; and the horizons."""
    runs = runs[runs.method.isin(methods)]
    curves_of = axis_curves(runs, curves)
    rows, horizons = [], {}
    for mixture, mix in runs.groupby("mixture", sort=False):
        # a curve must start at the run's first evaluation (iteration 0) to be integrated
        have = [r for r in mix.run_id if r in curves_of and curves_of[r][axis][0] == 0]
        if not have:
            continue
        h = min(curves_of[r][axis].max() for r in have)
        horizons[mixture] = h
        for r in mix[mix.run_id.isin(have)].itertuples():
            c = curves_of[r.run_id]
            rows.append({"method": r.method, "mixture": mixture, "seed": r.seed,
                         "value": mean_log(c[axis], c["y"], h),
                         "early": value_at_fraction(c["iterations"], c["y"], 0.2),
                         **({"protocol": r.protocol} if "protocol" in runs else {})})
    return pd.DataFrame(rows), horizons


def horizon_text(axis: str, horizons: dict) -> str:
    values = sorted(set(horizons.values()))
    unit = " s" if axis == "seconds" else ""
    digits = 0
    if len(values) == 1:
        return f"{AXES[axis]}, 0 to {values[0]:,.{digits}f}{unit}"
    parts = ", ".join(f"{m} {h:,.{digits}f}{unit}" for m, h in horizons.items())
    return f"{AXES[axis]}, 0 to h ({parts})"


def c2_verdicts(runs: pd.DataFrame, curves: pd.DataFrame) -> list[Verdict]:
    out = []
    if not {"iwgan", "wgan_gp"} <= set(runs.method):
        return out
    for axis in AXES:
        stats_, horizons = speed_statistics(runs, curves, axis)
        if stats_.empty:
            continue
        v = compare_methods(stats_, "value", "C2", axis=horizon_text(axis, horizons),
                            mixtures=MIXTURES, statistic=f"mean log W1, {AXES[axis]}")
        if axis == "iterations":
            early = []
            for m in ordered(stats_.mixture, MIXTURES):
                g = stats_[stats_.mixture == m]
                a, b = g[g.method == "iwgan"].early, g[g.method == "wgan_gp"].early
                early.append(f"{m} {num(a.mean())} vs {num(b.mean())} (one-sided Welch p "
                             f"{pval(welch(a, b).p_value(0, 'less'))})")
            v.details.append("For reference, the former statistic, W1 at the evaluation "
                             "nearest 20 % of training, iWGAN vs WGAN-GP: "
                             + "; ".join(early) + " (uncorrected; it does not decide).")
        out.append(v)
    return out


# ---------------------------------------------------------------------------------------
# C3: the duality gap
# ---------------------------------------------------------------------------------------

def gap_statistics(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per run: partial Spearman of (gap, W1 | iteration), Spearman of (gap, W1) and of
    (-iteration, W1) over its evaluations."""
    wide = curve_table(curves[curves.run_id.isin(set(runs.run_id))], ("dual_gap", "w1"))
    by_run = dict(tuple(wide.groupby("run_id")))
    rows = []
    for r in runs.itertuples():
        c = by_run.get(r.run_id)
        if c is None:
            continue
        rows.append({"method": r.method, "mixture": r.mixture, "seed": r.seed,
                     "partial": partial_spearman(c.dual_gap, c.w1, c.iteration),
                     "rho": spearman(c.dual_gap, c.w1),
                     "rho_time": spearman(-c.iteration, c.w1),
                     **({"protocol": r.protocol} if "protocol" in runs else {})})
    return pd.DataFrame(rows)


def c3_verdict(runs: pd.DataFrame, curves: pd.DataFrame) -> Verdict | None:
    iw = runs[runs.method == "iwgan"]
    if iw.empty:
        return None
    stats_ = gap_statistics(iw, curves)
    v = against_threshold(stats_, "partial", "C3", axis=RULES["C3"].axis, mixtures=MIXTURES,
                          statistic="partial Spearman ρ(gap, W1 | iteration)")
    rho, rho_t = mean_estimate(stats_.rho), mean_estimate(stats_.rho_time)
    undefined = int(stats_.partial.isna().sum())
    v.details.append(
        f"Beside it, over all {len(stats_)} runs: ρ(gap, W1) {interval_text(rho, 2)} and "
        f"ρ(−iteration, W1) {interval_text(rho_t, 2)} (mean [95 % t interval] of the "
        "per-run correlations): elapsed training alone orders the checkpoints about as "
        "well as the gap does, which is why the partial correlation decides."
        + (f" {undefined} run(s) have no partial correlation (a constant or undefined "
           "curve)." if undefined else ""))
    finals = iw.dropna(subset=["dual_gap_final", "final_w1"])
    r = spearman(finals.dual_gap_final, finals.final_w1)
    lo, hi = correlation_interval(r, len(finals))
    below = finals.dual_gap_final <= finals.w1_threshold
    k, n = int(below.sum()), len(finals)
    wl, wh = wilson(k, n)
    v.details.append(
        f"Across runs, final gap against final W1 (2,500 points), pooled over the "
        f"mixtures: Spearman ρ {num(r, 2)} [{num(lo, 2)}, {num(hi, 2)}] (p "
        f"{pval(correlation_p(r, len(finals)))}, {n} runs). The gap \"goes to 0\": its "
        f"final estimate is at or below the mixture's W1 threshold (2 × the real-vs-real "
        f"W1 floor at 1,000 points, the level a perfect generator's W1 stays under) in "
        f"{k}/{n} runs [{100 * wl:.0f}, {100 * wh:.0f} %]. The eq. (4) estimate's "
        "dependence on its number of inner steps (15 here) is not run here: it needs the "
        "final checkpoints, which the convergence experiment does not keep.")
    return v


# ---------------------------------------------------------------------------------------
# C4: the latent space
# ---------------------------------------------------------------------------------------

def prior_draws(n: int) -> np.ndarray:
    """The N(0, I_2) draws every run's pairs of codes are compared with (common random
    numbers: differences between runs are the encoders')."""
    return np.random.default_rng(PRIOR_SEED).standard_normal((n, 2))


@functools.lru_cache(maxsize=4096)
def codes_pair_mmd2(path: str, stamp: tuple[int, int]) -> tuple[np.ndarray, int] | None:
    """The 10 pairs' 2-D MMD^2 of the codes in one artifacts file (None: no codes, or
    fewer than two dimensions), cached
    by the file's (mtime, size): the convergence report and the scorecard both read them."""
    with np.load(path) as a:
        if "codes" not in a.files:
            return None
        codes = a["codes"].astype(float)
    if codes.shape[1] < 2:
        return None
    return pair_mmd2(codes, prior_draws(len(codes))), len(codes)


def latent_statistics(runs: pd.DataFrame, artifacts: Path) -> pd.DataFrame:
    """Per encoder run with codes in results/convergence_artifacts/: the mean and the
    largest over the 10 pairs of the 2-D MMD^2 against N(0, I_2), and the 5-D MMD^2 of the
    results row."""
    encoders = methods_with(runs, "latent_mmd")   # read from the rows: no latent, no Q
    rows = []
    for r in runs.itertuples():
        path = Path(artifacts) / f"{r.run_id}.npz"
        if r.method not in encoders or not path.exists():
            continue
        st = path.stat()
        found = codes_pair_mmd2(str(path.resolve()), (st.st_mtime_ns, st.st_size))
        if found is None:
            continue
        pairs, n = found
        rows.append({"method": r.method, "mixture": r.mixture, "seed": r.seed,
                     "pair_mean": float(pairs.mean()), "pair_max": float(pairs.max()),
                     "mmd5": float(r.latent_mmd), "n": n,
                     **({"protocol": r.protocol} if "protocol" in runs else {})})
    return pd.DataFrame(rows)


def references_text(dim: int, n: int) -> str:
    refs = ", ".join(f"{name} {num(gaussian_mmd2(dim, s, shift), 4)}"
                     for name, (s, shift) in LATENT_REFERENCES.items())
    return (f"{refs}; a perfect encoder scores 0 with a spread (s.d.) of "
            f"{num(null_mmd2_sd(dim, n), 4)} at n = {n}")


def c4_verdicts(runs: pd.DataFrame, artifacts: Path) -> list[Verdict]:
    stats_ = latent_statistics(runs, artifacts)
    if stats_.empty:
        return []
    margin = latent_margin()
    n = int(stats_.n.iloc[0])
    out = []
    for method in ordered(stats_.method, METHOD_NAMES):
        v = against_threshold(stats_, "pair_mean", "C4", axis=RULES["C4"].axis,
                              mixtures=MIXTURES, method=method, null=margin,
                              statistic="mean over pairs of the 2-D MMD²")
        s = stats_[stats_.method == method]
        mixes = ordered(s.mixture, MIXTURES)
        worst = "; ".join(f"{m} {num(s[s.mixture == m].pair_max.mean(), 4)}" for m in mixes)
        five = "; ".join(f"{m} {num(s[s.mixture == m].mmd5.mean(), 4)}" for m in mixes)
        if method == "iwgan":
            v.details.append(f"Calibration, exact 2-D MMD² against N(0, I_2): "
                             f"{references_text(2, n)}. The margin is {num(margin, 4)}.")
            v.details.append(f"5-D (the results' latent MMD, all five dimensions at once): "
                             f"{references_text(5, n)}.")
        ratio = "; ".join(f"{u.name} {u.estimate.value / margin:.1f}×" for u in v.units)
        v.details.append(f"{method}: the mean pair MMD² as a multiple of the margin: {ratio}; "
                         f"worst pair (mean over seeds) {worst}; 5-D MMD² {five}.")
        out.append(v)
    return out


# ---------------------------------------------------------------------------------------
# C5: the quality score
# ---------------------------------------------------------------------------------------

def c5_verdicts(runs: pd.DataFrame) -> list[Verdict]:
    enc = runs[runs.auroc.notna()]
    if "iwgan" not in set(enc.method):
        return []
    out = [against_threshold(enc, "auroc", "C5", axis=RULES["C5"].axis, mixtures=MIXTURES,
                             statistic="outlier AUROC")]
    for other in [m for m in ordered(enc.method, METHOD_NAMES) if m != "iwgan"]:
        out.append(compare_methods(enc, "auroc", "C5", axis=RULES["C5"].axis,
                                   mixtures=MIXTURES, baseline=other,
                                   statistic="outlier AUROC (beside)"))
    return out


# ---------------------------------------------------------------------------------------
# C6 and C7: the image datasets
# ---------------------------------------------------------------------------------------

# claim -> (dataset, factor on WGAN-GP's FID, why there is no verdict without runs)
IMAGE_CLAIMS = {
    "C6": ("celeba", 1.0, "needs a GPU and CelebA (`nox -s replicate_celeba`); no CelebA run "
                          "with FID is recorded in results/images.csv"),
    "C7": ("mnist", NON_INFERIORITY, "needs MNIST and, at the paper's budget, a GPU (`nox -s "
                                     "replicate_mnist`); no MNIST run with FID is recorded in "
                                     "results/images.csv. The offline digits stand-in "
                                     "(reports/digits.md: seed 0, FD on a small CNN) is not "
                                     "MNIST and gives no verdict"),
}


def image_verdict(claim: str, images: pd.DataFrame | None) -> Verdict:
    """C6 or C7 from results/images.csv: iWGAN's FID against WGAN-GP's (times the claim's
    factor) at the largest budget both reached, one family of one dataset."""
    dataset, factor, reason = IMAGE_CLAIMS[claim]
    rows = pd.DataFrame(columns=["method", "iterations"]) if images is None else trained(
        images[(images.dataset == dataset) & (images.fd_name == "FID")])
    rows = rows[rows.method.isin(["iwgan", "wgan_gp"])]
    budgets = [i for i in sorted(set(rows.iterations))
               if set(rows[rows.iterations == i].method) == {"iwgan", "wgan_gp"}]
    if not budgets:
        return not_run(claim, reason)
    runs = rows[rows.iterations == budgets[-1]].assign(mixture=dataset)
    runs["fd"] = runs.fd.astype(float) * np.where(runs.method == "wgan_gp", factor, 1.0)
    label = "FID" if factor == 1 else f"FID against {factor:g} × WGAN-GP's"
    return compare_methods(runs, "fd", claim, axis=end_of_training(runs), mixtures=[dataset],
                           statistic=label)


# ---------------------------------------------------------------------------------------
# The reports' verdict sections
# ---------------------------------------------------------------------------------------

INTRO = ("Each verdict applies the rule written down in docs/verdicts.md "
         "(`iwgan/metrics/verdicts.py`): one one-sided test per mixture in the direction the "
         "paper claims, Holm's correction across the mixtures, a mixture *holds* when its "
         "adjusted p-value is below 0.05 and *fails* when the opposite test's is; "
         "reproduced = every mixture holds, partly = some, not reproduced = none. Cells: "
         "mean [95 % t interval] over seeds. A verdict is about these runs' budget, "
         "protocol and seeds.")


def convergence_verdicts(sub: pd.DataFrame, cur: pd.DataFrame, results: Path) -> list[str]:
    """The verdicts of reports/convergence.md for one profile and preset, per protocol: C1
    on these runs, C2 on three axes, C3, C4 beside the other encoders, C5."""
    out = []
    for protocol, budget, runs in by_protocol(trained(sub)):
        profile, preset = runs.profile.iloc[0], runs.preset.iloc[0]
        out += [verdicts_heading(profile, preset, protocol, budget), "", INTRO, "",
                "#### C1 on these runs (the mode-coverage table's runs are in "
                "reports/mode_coverage.md)", ""]
        out += c1_section(c1_runs(runs, "convergence"), preset)
        out += ["#### C2 to C5", ""]
        for v in c2_verdicts(runs, cur):
            out += verdict_markdown(v)
        v3 = c3_verdict(runs, cur)
        if v3 is not None:
            out += verdict_markdown(v3, digits=2)
        for v in c4_verdicts(runs, Path(results) / "convergence_artifacts"):
            out += verdict_markdown(v, digits=4)
        for v in c5_verdicts(runs):
            out += verdict_markdown(v)
    return out


def mode_coverage_verdicts(sub: pd.DataFrame, curves: pd.DataFrame) -> list[str]:
    """C1 for one profile and preset of reports/mode_coverage.md, per protocol."""
    out = []
    for protocol, budget, runs in by_protocol(trained(sub)):
        profile, preset = runs.profile.iloc[0], runs.preset.iloc[0]
        out += [verdicts_heading(profile, preset, protocol, budget), "", INTRO, ""]
        out += c1_section(c1_runs(runs, "mode_coverage"), preset)
    return out


# ---------------------------------------------------------------------------------------
# The power calculation
# ---------------------------------------------------------------------------------------

def power_rows(results: Path) -> list[dict]:
    """For iWGAN against WGAN-GP on the paper preset of the reference profile, identical
    protocol (never pooled with tuned runs), every comparison verdict's statistic per
    mixture: the observed difference and spreads, and
    the runs per group Welch's test needs for 80 % power at the verdict's level (one-sided,
    alpha / 3: Holm's first step over three mixtures) and, for comparison, at a two-sided
    5 %."""
    results = Path(results)
    inputs = []
    mc_path, cv_path = results / "mode_coverage.csv", results / "convergence.csv"
    if mc_path.exists():
        mc = identical(c1_runs(read_results(mc_path), "mode_coverage"))
        mc = mc[(mc.profile == reference_profile(mc)) & (mc.preset == "paper")]
        for column, label in (("modes", "C1 modes covered"), ("hq_pct", "C1 HQ % (beside)")):
            inputs.append((label, "end of training", "results/mode_coverage.csv",
                           mc.assign(value=mc[column]), RULES["C1"].direction
                           if column == "modes" else "greater", reference_profile(mc)))
    if cv_path.exists():
        cv = identical(trained(read_results(cv_path)))
        cv = cv[(cv.profile == reference_profile(cv)) & (cv.preset == "paper")]
        curves = read_curves(results / "convergence_curves.csv")
        for axis in AXES:
            stats_, _ = speed_statistics(cv, curves, axis)
            if not stats_.empty:
                source = "results/convergence_curves.csv"
                profile = reference_profile(cv)
                inputs.append((f"C2 mean log W1, {AXES[axis]}", AXES[axis], source, stats_,
                               "less", profile))
                if axis == "iterations":
                    inputs.append(("W1 at 20 % of training (former statistic)", AXES[axis],
                                   source, stats_.assign(value=stats_.early), "less",
                                   profile))
    rows = []
    for label, axis, source, frame, direction, profile in inputs:
        for mixture in ordered(frame.mixture, MIXTURES):
            f = frame[frame.mixture == mixture]
            a = f[f.method == "iwgan"].value.dropna().to_numpy(float)
            b = f[f.method == "wgan_gp"].value.dropna().to_numpy(float)
            if len(a) < 2 or len(b) < 2:
                continue
            delta = float(a.mean() - b.mean())
            sa, sb = float(a.std(ddof=1)), float(b.std(ddof=1))
            pooled = math.sqrt((sa ** 2 + sb ** 2) / 2)
            claimed = delta > 0 if direction == "greater" else delta < 0
            alpha = POWER["alpha"] / POWER["family"]
            n_verdict = runs_per_group(delta, sa, sb, alpha, POWER["power"], 1) if claimed \
                else None
            n_two = runs_per_group(delta, sa, sb, 0.05, POWER["power"], 2)
            rows.append({
                "comparison": label, "axis": axis, "mixture": mixture, "source": source,
                "profile": profile, "preset": "paper",
                "protocol": rules.protocol_of(f),
                "runs": [len(a), len(b)], "iwgan_mean": float(a.mean()),
                "wgan_gp_mean": float(b.mean()), "difference": delta,
                "sd_iwgan": sa, "sd_wgan_gp": sb,
                "effect_size_d": delta / pooled if pooled > 0 else None,
                "in_claimed_direction": bool(claimed),
                "power_now": (welch_power(delta, sa, sb, min(len(a), len(b)), alpha, 1)
                              if claimed and pooled > 0 else None),
                "runs_per_group_verdict": n_verdict,
                "runs_per_group_two_sided_5pct": n_two})
    return rows


def power_analysis(results: Path) -> dict:
    rows = power_rows(results)
    seeds, unpowered = seeds_per_cell(rows)
    return {"description": (
        "Runs per group (seeds per cell) that Welch's test needs for "
        f"{POWER['power']:.0%} power at the effect observed in the committed results, "
        "iWGAN against WGAN-GP on the paper preset of the reference profile: at the "
        f"verdicts' level (one-sided, alpha {POWER['alpha']:g} / {POWER['family']}, Holm's "
        "first step over three mixtures) and at a two-sided 5 % for comparison. Null: the "
        "observed difference is against the claim (no seed count gives power for the "
        "claim) or the groups did not vary. Written by `python -m iwgan power`."),
        "settings": POWER, "rows": rows, "seeds_per_cell": seeds,
        "not_powered": [f"{r['comparison']}, {r['mixture']}" for r in unpowered]}


def write_power(results: Path) -> Path:
    path = Path(results) / POWER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(power_analysis(results), indent=1, sort_keys=True)
                      + "\n")
    return path


def power_markdown(power: dict) -> str:
    def n_text(n, row, two_sided=False):
        if n is not None:
            return f"{n:,}"
        if row["sd_iwgan"] == 0 and row["sd_wgan_gp"] == 0:
            return "no spread"
        if row["difference"] == 0:
            return "no difference"
        return "n/a" if two_sided else "against the claim"

    rows = [{"comparison": r["comparison"], "mixture": r["mixture"],
             "iWGAN − WGAN-GP": f"{r['difference']:+.3f}",
             "s.d. iWGAN / WGAN-GP": f"{r['sd_iwgan']:.3f} / {r['sd_wgan_gp']:.3f}",
             "d": "n/a" if r["effect_size_d"] is None else f"{r['effect_size_d']:+.2f}",
             "power with today's runs": ("n/a" if r["power_now"] is None
                                         else f"{100 * r['power_now']:.0f} %"),
             "runs per group, verdict's test": n_text(r["runs_per_group_verdict"], r),
             "runs per group, two-sided 5 %": n_text(r["runs_per_group_two_sided_5pct"], r,
                                                     two_sided=True)}
            for r in power["rows"]]
    return markdown_table(pd.DataFrame(rows))


def seeds_markdown(power: dict) -> str:
    rows = [r for r in power["rows"] if r["comparison"] in POWER["deciding"]
            and r["in_claimed_direction"] and r["runs_per_group_verdict"] is not None
            and r["effect_size_d"] is not None
            and abs(r["effect_size_d"]) >= POWER["min_effect_d"]]
    need = max(rows, key=lambda r: r["runs_per_group_verdict"], default=None)
    text = f"**{power['seeds_per_cell']} seeds per cell**"
    if need is not None:
        text += (f" (the largest need: {need['runs_per_group_verdict']} runs per group, "
                 f"{need['comparison']} on the {need['mixture']}, d = "
                 f"{need['effect_size_d']:+.2f})")
    unpowered = [r for r in power["rows"] if f"{r['comparison']}, {r['mixture']}"
                 in power["not_powered"]]
    if unpowered:
        text += ("; not powered, below |d| = " + f"{POWER['min_effect_d']:g}: " + "; ".join(
            f"{r['comparison']}, {r['mixture']} (d = {r['effect_size_d']:+.2f}: "
            f"{r['runs_per_group_verdict'] or 'no count'} runs per group)" for r in unpowered))
    return text + "."


def docs_blocks(power: dict) -> dict[str, str]:
    """The generated parts of docs/verdicts.md, by block name."""
    return {"rules": rules_markdown(), "power": power_markdown(power),
            "seeds": seeds_markdown(power)}


BLOCK = re.compile(r"(<!-- begin (?P<name>\w+)[^>]*-->\n)(?P<body>.*?)(<!-- end (?P=name) -->)",
                   re.S)


def fill_blocks(text: str, blocks: dict[str, str]) -> str:
    """``text`` with the body of every ``<!-- begin NAME ... -->`` ... ``<!-- end NAME
    -->`` block of ``blocks`` replaced."""
    def body(m):
        name = m.group("name")
        return m.group(0) if name not in blocks else \
            f"{m.group(1)}{blocks[name].rstrip()}\n{m.group(4)}"
    return BLOCK.sub(body, text)


def refresh_docs(root: Path) -> Path | None:
    """Rewrite the generated blocks of ``root``/docs/verdicts.md from the rules and
    ``root``/results/verdicts/power.json (when both exist)."""
    docs, power = Path(root) / "docs" / "verdicts.md", Path(root) / "results" / POWER_FILE
    if not docs.exists() or not power.exists():
        return None
    text = docs.read_text()
    new = fill_blocks(text, docs_blocks(json.loads(power.read_text())))
    if new != text:
        atomic_write_text(docs, new)
    return docs
