"""The published mode-coverage numbers (../shared/docs/protocols.md): the standard protocol
on the literature presets, 2,500 samples, 3 std, and the suite's baselines judged against
them by equivalence (docs/verdicts.md): per baseline, cell and published number, our mean
minus the published mean with its 95 % t interval over seeds, against a margin stated
before the runs (``iwgan.metrics.verdicts.EQUIVALENCE_MARGINS``)."""

from __future__ import annotations

import pandas as pd

from iwgan.core.methods import METHOD_NAMES
from iwgan.metrics import verdicts as rules
from iwgan.metrics.statistics import mean_estimate, wilson
from iwgan.reporting.common import markdown_table, ordered, updates_per_iteration
from iwgan.reporting.verdicts import by_protocol, c1_runs, interval_text, num

# (source, method, ring (modes, HQ %), grid (modes, HQ %), spread)
PUBLISHED = [
    ("VEEGAN", "GAN", (1.0, 99.3), (3.3, 0.5), "mean of 5 runs"),
    ("VEEGAN", "ALI", (2.8, 0.13), (15.8, 1.6), "mean of 5 runs"),
    ("VEEGAN", "Unrolled GAN", (7.6, 35.6), (23.6, 16.0), "mean of 5 runs"),
    ("VEEGAN", "VEEGAN", (8.0, 52.9), (24.6, 40.0), "mean of 5 runs"),
    ("GDPP", "WGAN-GP", (6.8, 59.6), (24.2, 28.7), "not given"),
    ("GDPP", "GDPP-GAN", (8.0, 71.7), (24.8, 68.5), "not given"),
    ("PacGAN", "GAN", (6.3, 98.2), (17.3, 94.8), "s.e. over 10 runs"),
    ("PacGAN", "ALI", (6.6, 97.6), (24.1, 95.7), "s.e. over 10 runs"),
    ("PacGAN", "PacGAN2", (7.9, 95.6), (23.8, 91.3), "s.e. over 10 runs"),
]
# The KL column where a source gives one: (source, method) -> (ring, grid).
PUBLISHED_KL = {("PacGAN", "GAN"): (0.45, 0.70), ("PacGAN", "PacGAN2"): (0.07, 0.13)}
# Every source's setup, from its public code: the budget is the fact that matters most.
SETUPS = {
    "VEEGAN": ("128-unit ReLU layers, batch 500, Adam 1e-3, about 100,000 iterations (from "
               "a port of its notebook)", 100_000),
    "GDPP": ("G two tanh layers of 128, z dim 256, D two layers of 128, batch 512, Adam G "
             "1e-3 / D 1e-4 (β1 0.5), one step each, 25,000 iterations; its ring has 7 "
             "distinct centres (np.linspace(0, 2π, 8) repeats angle 0), not our 8, so a "
             "run can score 8 modes on 7 real ones", 25_000),
    "PacGAN": ("G four layers of 400 with batch norm, D three maxout layers of 200, Adam "
               "1e-4 (β1 0.8), batch 100, about 400,000 updates", 400_000),
}
# What each source's budget counts.
BUDGET_UNITS = {"VEEGAN": "iterations", "GDPP": "iterations (one G step each)",
                "PacGAN": "updates"}
# A published cell measured on another mixture than ours, named beside its numbers.
OTHER_SETUP = {("GDPP", "ring"): "7-centre ring, a different setup"}
TABLES = {"VEEGAN": "Table 1", "GDPP": "Table 1", "PacGAN": "Table 1"}
# The suite's methods that the literature reports, by its names.
# ("ali" is ALI's stochastic encoder: the suite's BiGAN is not the published ALI.)
BASELINES = {"gan": "GAN", "ali": "ALI", "wgan_gp": "WGAN-GP"}
MIXTURE_INDEX = {"ring": 2, "grid": 3}
METRICS = {"modes": ("modes", 1), "hq_pct": ("HQ %", 1), "kl": ("KL", 3)}


def published(method_name: str, mixture: str) -> list[tuple[str, dict]]:
    """(source, {metric: published mean}) of every published number for that method and
    mixture (the KL only where the source gives it)."""
    i = MIXTURE_INDEX[mixture]
    out = []
    for row in PUBLISHED:
        if row[1] != method_name:
            continue
        values = {"modes": row[i][0], "hq_pct": row[i][1]}
        if (row[0], row[1]) in PUBLISHED_KL:
            values["kl"] = PUBLISHED_KL[row[0], row[1]][i - 2]
        out.append((row[0], values))
    return out


def source_label(source: str, mixture: str) -> str:
    note = OTHER_SETUP.get((source, mixture))
    return f"{source} ({TABLES[source]}" + (f"; {note})" if note else ")")


def budget_text(cell: pd.DataFrame) -> str:
    """"5,000 iterations = 25,000 G updates" for one cell of ours."""
    its = int(cell.iterations.iloc[0])
    per = updates_per_iteration(cell.method.iloc[0], int(cell.n_critic.iloc[0]))
    return f"{its:,} iterations = {its * per:,} G updates"


def success_text(cell: pd.DataFrame) -> str:
    """"k/n [Wilson 95 %]" of the runs covering all K modes, "(split)" when the seeds
    split into successes and collapses."""
    k, n = int(rules.success(cell.modes, cell.k.iloc[0]).sum()), len(cell)
    lo, hi = wilson(k, n)
    split = rules.seeds_split(cell.modes, cell.hq_pct, cell.k.iloc[0])
    return f"{k}/{n} [{100 * lo:.0f}, {100 * hi:.0f} %]" + (" split" if split else "")


def equivalence_rows(runs: pd.DataFrame, protocol: str):
    """One row per baseline, mixture, published number and metric."""
    for mixture in ("ring", "grid"):
        mix = runs[runs.mixture == mixture]
        for method in ordered(mix.method, METHOD_NAMES):
            if method not in BASELINES or mix[mix.method == method].empty:
                continue
            cell = mix[mix.method == method]
            for source, values in published(BASELINES[method], mixture):
                for metric, pub in values.items():
                    label, digits = METRICS[metric]
                    diff = rules.literature_difference(cell[metric], pub)
                    margin = rules.EQUIVALENCE_MARGINS[metric]
                    yield {"mixture": mixture, "method": method, "protocol": protocol,
                           "seeds": len(cell), "budget": budget_text(cell),
                           "published": f"{source_label(source, mixture)} "
                                        f"{BASELINES[method]}",
                           "metric": label,
                           "ours": interval_text(mean_estimate(cell[metric]), digits),
                           "theirs": f"{pub:g}",
                           "ours − theirs": interval_text(diff, digits, sign=True),
                           "margin": f"± {margin:g}",
                           "verdict": rules.equivalence(diff.interval(), margin),
                           "all K modes (Wilson)": success_text(cell)}


def equivalence_section(literature_runs: pd.DataFrame, profile: str) -> list[str]:
    """The baselines against the published numbers by equivalence, per protocol and
    budget (never pooled)."""
    runs = c1_runs(literature_runs, "mode_coverage")
    rows = [r for protocol, _, g in by_protocol(runs) for r in equivalence_rows(g, protocol)]
    m = rules.EQUIVALENCE_MARGINS
    text = ["### The baselines against the published numbers, by equivalence", "",
            f"Rule (docs/verdicts.md, stated before the runs): per baseline, cell and "
            f"published number, our mean over seeds minus the published mean, with the 95 % "
            f"t interval of our mean (the published mean taken as fixed: most sources give "
            f"no spread). **agrees**: the interval lies inside the margin (± {m['modes']:g} "
            f"mode, ± {m['hq_pct']:g} HQ points, ± {m['kl']:g} KL); **below** / **above**: "
            "it lies entirely beyond the margin on that side; else **inconclusive** (also "
            "with one seed). *All K modes*: the runs covering every mode at the end "
            "(success), with a Wilson 95 % interval; *split*: some runs succeed and some "
            "collapse (docs/verdicts.md), so the mean describes no run and the success "
            f"rate is the number to read. Our runs: the `{profile}` profile on the "
            "literature preset; axis: end of training, with the budget in iterations and "
            "in generator updates (the published budgets are above).", ""]
    if not rows:
        return text + ["No baseline with published numbers has run on the literature "
                       "preset.", ""]
    counts = pd.Series([r["verdict"] for r in rows]).value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in
                        (rules.AGREES, rules.BELOW, rules.ABOVE, rules.INCONCLUSIVE))
    return text + [markdown_table(pd.DataFrame(rows)), "",
                   f"Over the {len(rows)} comparisons: {summary}.", ""]


def published_rows(mixture: str) -> list[dict]:
    """The published numbers of one mixture as rows beside ours."""
    rows = []
    for source, name, ring, grid, spread in PUBLISHED:
        modes, hq = ring if mixture == "ring" else grid
        kl = PUBLISHED_KL.get((source, name), (None, None))[MIXTURE_INDEX[mixture] - 2]
        rows.append({"mixture": mixture, "source": source_label(source, mixture),
                     "method": name, "modes": f"{modes:g}", "HQ %": f"{hq:g}",
                     "KL": num(kl, 2) if kl is not None else "–", "runs": spread,
                     "budget": f"{SETUPS[source][1]:,} {BUDGET_UNITS[source]}"})
    return rows
