"""Where reports/convergence.md meets the mode-coverage table: a warning when the two were
trained with different recipes, and the plateau rule on both experiments' curves of the
same runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from iwgan.core.methods import METHOD_NAMES
from iwgan.engine.records import read_results
from iwgan.reporting.common import (
    identical,
    markdown_table,
    moving_average,
    ordered,
    recipe_text,
    settings_text,
    trained,
)
from iwgan.reporting.mode_coverage import is_converged


def recipe_mismatch(sub, results: Path) -> list[str]:
    """A warning where the mode-coverage table's runs of the same profile were trained
    with another moving average than these (a recipe changed and only one experiment
    was re-run), so that nobody reads the two reports as one budget."""
    path = results / "mode_coverage.csv"
    if not path.exists():
        return []
    mc = identical(trained(read_results(path)))
    mc = mc[mc.profile.isin(set(sub.profile))]
    if mc.empty or set(moving_average(mc)) == set(moving_average(sub)):
        return []
    return [f"**Not the recipe of the mode-coverage table.** These runs were trained with "
            f"{recipe_text(sub)}; the `{sub.profile.iloc[0]}` rows of "
            f"`results/mode_coverage.csv` with {recipe_text(mc)}. The verdicts below are "
            "these runs' and do not describe the table's; `python -m iwgan convergence "
            f"--profile {sub.profile.iloc[0]} --max-stack 15` re-runs them on the current "
            "recipe.", ""]


# What a seeded CPU run's float results depend on besides its settings, as results rows
# record it (rows before the CPU columns existed have only the platform).
MACHINE = ("cpu_capability", "cpu_model", "platform")


def why_different(both, mc) -> str:
    """Why runs with the same run_id are different models: the recipe (the run_id leaves
    the experiments' own fields out), or the machine, as far as the rows say."""
    runs = mc[mc.run_id.isin(both.run_id)]
    if recipe_text(both) != recipe_text(runs):
        return (f"They were trained with different settings: here {recipe_text(both)}, in "
                f"the table {recipe_text(runs)}.")
    differ = [c for c in MACHINE
              if c in runs and c in both and set(both[c].dropna()) != set(runs[c].dropna())]
    where = (f"on different machines (the rows' {' and '.join(differ)} "
             f"differ{'s' if len(differ) == 1 else ''})" if differ
             else "on machines the rows do not tell apart")
    return (f"Their settings are the same ({recipe_text(both)}); they were trained {where}. "
            "A seeded CPU run is bit-exact only on the same torch build and CPU "
            "(docs/reproducibility.md), and thousands of adversarial steps grow a last-bit "
            "difference into another model: the spread between the two is a spread "
            "between seeds.")


def rule_agreement(df, results: Path) -> list[str]:
    """The plateau rule on two curves of the same trained runs: this experiment's and the
    mode-coverage table's (same run_id, same final samples), per method."""
    path = results / "mode_coverage.csv"
    if "converged" not in df or not path.exists():
        return []
    mc = read_results(path)
    if "converged" not in mc:
        return []
    both = df.merge(mc[["run_id", "converged", "modes", "hq_pct",
                        *[c for c in MACHINE if c in mc]]], on="run_id", suffixes=("", "_mc"))
    both = both[both.converged.notna() & both.converged_mc.notna()]
    if both.empty:
        return []
    same_models = bool(((both.final_modes == both.modes)
                        & ((both.final_hq_pct - both.hq_pct).abs() < 1e-9)).all())
    if not same_models:
        return ["## The plateau rule on two curves of the same runs", "",
                f"{len(both)} runs here share their run_id with rows of "
                "`results/mode_coverage.csv`, but their final modes or HQ % differ, so "
                "they are different models and the two experiments' plateau verdicts are "
                f"not compared. {why_different(both, mc)}", ""]
    flag, flag_mc = is_converged(both.converged), is_converged(both.converged_mc)
    rows = []
    for method, idx in both.groupby("method", sort=False).groups.items():
        a, b = flag[idx], flag_mc[idx]
        rows.append({"method": method, "runs": len(idx), "both": int((a & b).sum()),
                     "only this curve": int((a & ~b).sum()),
                     "only the mode-coverage curve": int((~a & b).sum()),
                     "neither": int((~a & ~b).sum()),
                     "agree": f"{int((a == b).sum())}/{len(idx)}"})
    order = ordered(both.method, METHOD_NAMES)
    rows.sort(key=lambda r: order.index(r["method"]))
    table = mc[mc.run_id.isin(both.run_id)]
    agree = int((flag == flag_mc).sum())
    same = "; same final modes and HQ %, so the same trained models"
    opt = df.iloc[0]
    return ["## The plateau rule on two curves of the same runs", "",
            f"{len(both)} runs here are also rows of `results/mode_coverage.csv` (same "
            f"run_id{same}). Each experiment applies the rule to its own evaluation curve: "
            f"this one every {int(opt.opt_eval_every)} iterations with W1 on "
            f"{int(opt.opt_w1_samples)} points, the mode-coverage table's at "
            f"{settings_text(table, 'curve_points')} points with W1 on "
            f"{settings_text(table, 'curve_w1_samples')}. The verdicts agree on "
            f"{agree}/{len(both)} runs: where they differ, the fitted change over the last "
            "quarter is close to its limit and the evaluations' noise decides, so a single "
            "run's flag near the limit is not a firm verdict, and a cell's count can move "
            "by several runs.", "", markdown_table(pd.DataFrame(rows)), ""]
