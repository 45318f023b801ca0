"""reports/convergence.md, rebuilt from results/ alone: the duality gap of eq. (4) against
the exact W1 over training (Figure 2), times to convergence, rank correlations, Algorithm
1's stopping rule, the latent space (Figure 3), the quality score (Figure 4), outlier
AUROC, interpolations (Figure 8), runtimes, and the verdicts of iwgan.metrics.verdicts
(iwgan.reporting.verdicts). The figures' sections are
:mod:`iwgan.reporting.convergence_figures`, the comparison with the mode-coverage table
:mod:`iwgan.reporting.convergence_agreement`."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

from iwgan.data.mixtures import MIXTURES
from iwgan.engine.records import read_curves, read_results
from iwgan.metrics.continuation import judge
from iwgan.reporting.common import (
    TRAINED,
    cells,
    fmt_mean_se,
    markdown_table,
    ordered,
    provenance_section,
    ran_continuation,
    recipe_text,
    trained,
    updates_per_iteration,
    wall_time_section,
    write_report,
)
from iwgan.reporting.convergence_agreement import recipe_mismatch, rule_agreement
from iwgan.reporting.convergence_figures import (
    figure2_section,
    interpolation_section,
    latent_section,
    quality_section,
)
from iwgan.reporting.mode_coverage import (
    PRESET_TEXT,
    PROFILE_ORDER,
    converged_count,
    flag_count,
    quick_vs_converged,
)
from iwgan.reporting.verdicts import convergence_verdicts

REQUIRED = ["status", "train_seconds", "eval_seconds", "w1_threshold", "it_all_modes_hq",
            "it_w1_below", "spearman_dual_gap", "final_w1", "command"]
GAP_LABEL = {"dual_gap": "eq. (4) / WGAN gap (sup − inf)",
             "gap_cheap_heldout": "cheap primal − dual, held out",
             "gap_cheap_batch": "cheap primal − dual, training batch"}
CONVERGENCE_METRICS = {"modes": ("final_modes", 1), "HQ %": ("final_hq_pct", 1),
                       "W1": ("final_w1", 3), "dual gap": ("dual_gap_final", 3),
                       "latent MMD p": ("latent_mmd_p", 2), "AUROC": ("auroc", 3)}


def build_report(results: Path, reports: Path) -> Path:
    results, reports = Path(results), Path(reports)
    df = read_results(results / "convergence.csv", required=REQUIRED)
    curves = read_curves(results / "convergence_curves.csv")
    figures = reports / "figures"
    ok = trained(df)
    out = ["# Convergence, the duality gap, the latent space and the quality score", "",
           "Rebuilt by `python -m iwgan reports` from `results/convergence.csv`, "
           "`results/convergence_curves.csv` and `results/convergence_artifacts/` alone; "
           "do not edit.", ""]
    out += how_to_read(df, results)
    for profile in ordered(ok["profile"], PROFILE_ORDER):
        for preset in ordered(ok[ok.profile == profile]["preset"], ["paper", "literature"]):
            sub = ok[(ok.profile == profile) & (ok.preset == preset)]
            cur = curves[curves.run_id.isin(set(sub.run_id))]
            tag = f"{profile}_{preset}"
            out += [f"## {profile} profile, {preset} preset", "",
                    f"Mixtures under {PRESET_TEXT.get(preset, preset)}; "
                    f"{', '.join(map(str, sorted(set(sub.iterations))))} iterations, width "
                    f"{', '.join(map(str, sorted(set(sub.width))))} of Appendix D1, "
                    f"{recipe_text(sub)}, seeds "
                    f"{', '.join(map(str, sorted(set(sub.seed))))}.", ""]
            out += recipe_mismatch(sub, results)
            out += convergence_verdicts(sub, cur, results)
            out += figure2_section(sub, cur, results, figures, reports, tag)
            out += convergence_table(sub)
            out += correlation_table(sub)
            out += gap_steps_table(sub)
            out += stopping_table(sub)
            out += latent_section(sub, results, figures, reports, tag)
            out += quality_section(sub, results, figures, reports, tag)
            out += interpolation_section(sub, results, figures, reports, tag)
    out += rule_agreement(ok, results)
    out += quick_vs_converged(ok, CONVERGENCE_METRICS, what=(
        "; final W1 and the dual gap of eq. (4) at the last evaluation, the latent MMD "
        "test's p-value and the outlier AUROC"))
    out += runtime_section(df, results)
    out += diverged_section(df)
    out += provenance_section(df)
    return write_report(reports / "convergence.md", "\n".join(out))


def reached(values, total) -> str:
    """Mean ± s.e. over the seeds that reached it, and how many did."""
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return f"not reached (0/{total})"
    return f"{fmt_mean_se(v, 0)} ({len(v)}/{total})"


# ---------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------

def how_to_read(df, results) -> list[str]:
    opt = df.iloc[0]
    thresholds = results / "convergence_thresholds.json"
    th_rows = []
    if thresholds.exists():
        for key, v in sorted(json.loads(thresholds.read_text()).items()):
            th_rows.append({"mixture-preset": key, "points": v["samples"],
                            "real-vs-real W1 floor": f"{v['floor']:.4f}",
                            "threshold": f"{v['threshold']:.4f}"})
    out = ["## How to read it", "",
           f"Every **M = {int(opt.opt_eval_every)}** training iterations (and before the "
           "first) each run is evaluated on held-out draws only (evaluation-only random "
           "generators; a test checks that a run with evaluation ends with the same weights "
           "as one without):", "",
           f"- **duality gap, eq. (4)**, estimated as Grnarova et al. (2018): "
           f"{int(opt.opt_gap_steps)} Adam steps on a copy of f towards sup_f L(G, Q, f) "
           "(1-Lipschitz by the gradient penalty, same λ_GP), and as many on copies of "
           "(G, Q) towards inf L(G, Q, f), with L(G, Q, f) = E||x − G(Q(x))|| + "
           "E f(G(Q(x))) − E f(G(z)); both values on "
           f"{int(opt.opt_gap_samples)} held-out points. **WGAN-GP has no encoder**: its "
           "gap is the analogous WGAN gap sup_f V(G, f) − inf_G V(G, f), V(G, f) = "
           "E f(x) − E f(G(z)) (Grnarova et al.'s definition for WGAN). **ALI, BiGAN and "
           "α-GAN** have a logit discriminator, not a 1-Lipschitz critic: their eq. (4) value uses "
           "it as the current f, so their gap measures (G, Q) against an f outside the "
           "critic class and is only indicative. The estimate is (up to the softness of the "
           "penalty) a lower bound of the "
           "true gap that grows with the number of inner steps (the copies move about lr "
           "per step and parameter), so compare it across checkpoints, not with 0 alone;",
           "- the **cheap estimates**: primal − dual = mean ||x − G(Q(x))|| − (mean f(x) − "
           "mean f(G(z))), on the held-out set (encoder methods) and on the training batch "
           "as iWGAN's training logs it (iWGAN only);",
           f"- **W1**: exact optimal transport (POT) between {int(opt.opt_w1_samples)} "
           "generated and real points — fewer than the protocol's 2,500 to keep the "
           "evaluation cost within 30 % of training (on the development machine one W1 "
           "cost ~0.7 s at 2,500 points, ~0.1 s at 1,000: the transport grows faster "
           "than quadratically); the real set and the z's are fixed per run (common random "
           "numbers) so "
           "that a curve's changes are the model's. The final W1 at 2,500 points is in the "
           f"tables as *final W1*. The two terms of **Theorem 2.2**, W1(P_X, P_G(Q(X))) "
           f"and W1(P_G(Q(X)), P_G(Z)), on {int(opt.opt_decomposition_samples)} points;",
           "- **mode coverage** by the 3-std protocol on 2,500 samples (see "
           "`reports/mode_coverage.md`).", "",
           "**Convergence criteria.** (a) all K modes covered and HQ ≥ "
           f"{opt.opt_hq_target:g} %; (b) W1 ≤ {opt.opt_w1_floor_factor:g} × the W1 "
           "between two independent real samples of the same size (mean of 5 pairs). The "
           "latter is the noise floor: even a perfect generator scores it, and at 1,000 "
           "points on these spiky mixtures it is large because the number of points per "
           "mode fluctuates. Twice the floor is a level a perfect generator passes with "
           "high probability while a generator that drops a ring mode does not (measured "
           "when the protocol was designed, paper preset, 1,000 points: moving one of the 8 "
           "ring modes onto its neighbour costs W1 ≈ 0.23 against a floor ≈ 0.07); W1 "
           "cannot see a single dropped spiral or grid mode at 1,000 points, which is what "
           "criterion (a) is for. Times are training seconds (evaluation excluded) at the "
           "first evaluation meeting the criterion, so they resolve to M iterations.", ""]
    if th_rows:
        out += [markdown_table(pd.DataFrame(th_rows)), ""]
    return out


def convergence_table(sub) -> list[str]:
    rows = []
    continued = ran_continuation(sub)
    for mixture, method, c in cells(sub):
        n = len(c)
        per_it = pd.Series([updates_per_iteration(method, int(k)) for k in c.n_critic],
                           index=c.index)
        rows.append({
            "mixture": mixture, "method": method, "seeds": n,
            "converged": converged_count(c) if "converged" in c else "n/a",
            **({"stays converged": flag_count(
                judge(c, "final_w1", "final_hq_pct", "final_modes"), "continued_converged")}
               if continued else {}),
            "collapsed": flag_count(c, "collapsed"),
            "it. to (a)": reached(c.it_all_modes_hq, n),
            "G updates to (a)": reached(c.it_all_modes_hq * per_it, n),
            "s to (a)": reached(c.sec_all_modes_hq, n),
            "it. to (b)": reached(c.it_w1_below, n),
            "G updates to (b)": reached(c.it_w1_below * per_it, n),
            "s to (b)": reached(c.sec_w1_below, n),
            "final W1 (2,500)": fmt_mean_se(c.final_w1, 3),
            "final modes": fmt_mean_se(c.final_modes, 1),
            "final HQ %": fmt_mean_se(c.final_hq_pct, 1),
            "final gap": fmt_mean_se(c.dual_gap_final, 3),
            "W1(X, G(Q(X)))": fmt_mean_se(c.curve_w1_recon_final, 3),
            "W1(G(Q(X)), G(Z))": fmt_mean_se(c.curve_w1_latent_final, 3)})
    return ["### Convergence", "",
            "Iterations, generator updates and training seconds to (a) all modes with HQ ≥ "
            "target and (b) W1 ≤ threshold: mean ± s.e. over the seeds that reached it (how "
            "many did). Generator updates are iterations × the method's generator steps per "
            "iteration, read from its phases (iWGAN takes n_critic G/Q steps an iteration, "
            "Algorithm 1; a baseline one), so the three axes can order the methods "
            "differently; each comparison below names its axis. The last "
            "two columns are Theorem 2.2's terms at the end of training (n/a: no encoder). "
            "*Converged*: runs that finished learning by the plateau rule on this curve "
            "(reports/mode_coverage.md says how; n/a: too few evaluations in the last "
            "quarter of training for the rule). *Stays converged* (where the runs ran "
            "`--continue-check`): runs that, trained on for a quarter of their budget at a "
            "constant tenth of their rate, moved final W1 and HQ % by less than their "
            "cell's seed-to-seed spread and kept their modes (`iwgan.metrics."
            "continuation`); *collapsed*: fewer than K/2 modes or under 5 % HQ at the end "
            "(docs/verdicts.md).",
            "", markdown_table(pd.DataFrame(rows)), ""]


def correlation_table(sub) -> list[str]:
    rows = []
    for mixture, method, c in cells(sub):
        rows.append({"mixture": mixture, "method": method, "seeds": len(c),
                     **{GAP_LABEL[k]: fmt_mean_se(c[f"spearman_{k}"], 2)
                        for k in GAP_LABEL},
                     "evaluations with gap < 0": fmt_mean_se(
                         100 * c.dual_gap_negative_frac, 0) + " %"})
    return ["### Does the duality gap track W1?", "",
            "Spearman rank correlation, over one run's evaluations, between each gap "
            "estimate and the exact W1 (mean ± s.e. over seeds; 1 = the gap orders the "
            "checkpoints exactly as W1 does; n/a: the method has no such estimate). A "
            "negative eq. (4) estimate means the few inner steps did not reach the sup or "
            "the inf.", "", markdown_table(pd.DataFrame(rows)), ""]


def gap_steps_table(sub) -> list[str]:
    """eq. (4) on the final models at each inner-step count the runs estimated it with
    (``convergence --final-gap-steps``): how much of the curve's estimate is the steps'."""
    steps = sorted(int(c.removeprefix("final_gap_")) for c in sub
                   if re.fullmatch(r"final_gap_\d+", c) and sub[c].notna().any())
    if len(steps) < 2:
        return []
    few, many = f"final_gap_{steps[0]}", f"final_gap_{steps[-1]}"
    rows = [{"mixture": mixture, "method": method, "seeds": int(c[many].notna().sum()),
             **{f"{n} steps": fmt_mean_se(c[f"final_gap_{n}"], 3) for n in steps},
             f"{steps[-1]} − {steps[0]} steps": fmt_mean_se(c[many] - c[few], 3)}
            for mixture, method, c in cells(sub) if c[many].notna().any()]
    return ["### eq. (4)'s sensitivity to its inner steps", "",
            "The duality gap of eq. (4) estimated once more on each run's final models "
            f"with {', '.join(map(str, steps))} Adam steps of the sup copy of f and of the "
            "inf copy of (G, Q), all on one held-out set and one stream of batches (mean ± "
            "s.e. over seeds). A gap that grows with the steps was under-estimated by "
            "fewer: the sup (or inf) had not been reached.", "",
            markdown_table(pd.DataFrame(rows)), ""]


def stopping_table(sub) -> list[str]:
    rows = []
    c_all = sub[sub.method == "iwgan"]
    if c_all.empty:
        return []
    for mixture in ordered(c_all["mixture"], MIXTURES):
        for r in c_all[c_all.mixture == mixture].sort_values("seed").itertuples():
            def at(it, w1, final=r.curve_w1_final):
                if not math.isfinite(it):
                    return "never"
                return f"it. {int(it)}: W1 {w1:.3f} (final {final:.3f})"
            rows.append({"mixture": mixture, "seed": r.seed,
                         "rule on batch estimates": at(r.stop_it_batch, r.stop_w1),
                         "min windowed |gap|, |L|": (f"{r.min_window_gap:.3f}, "
                                                     f"{r.min_window_L:.3f}"
                                                     if math.isfinite(r.min_window_gap)
                                                     else "n/a"),
                         "rule on eq. (4) and held-out L": at(r.stop_it_eq4, r.stop_w1_eq4),
                         "W1 threshold": f"{r.w1_threshold:.3f}"})
    return ["### Where Algorithm 1's stopping rule would have stopped (iWGAN)", "",
            "Algorithm 1 trains while DualGap > ε₁ or L > ε₂. Replayed on the full training "
            "history with the suite's rule (`iwgan.engine.trainer.stop_rule_met`: the magnitudes "
            "of the batch estimates' means over a window, ε₁ = ε₂ = the config's "
            "`stop_gap`, `stop_loss`), and on the eq. (4) estimate with the held-out L at "
            "the evaluations. *How far from converged*: W1 at the first evaluation at or "
            "after the stop, against the run's final W1 and the threshold.", "",
            markdown_table(pd.DataFrame(rows)), ""]


def runtime_row(g, profile, method) -> dict:
    train, ev = g.train_seconds.sum(), g.eval_seconds.sum()
    return {"profile": profile, "method": method, "runs": len(g),
            "M": ", ".join(str(int(v)) for v in sorted(set(g.opt_eval_every))),
            "train s / run": fmt_mean_se(g.train_seconds, 1),
            "periodic eval s / run": fmt_mean_se(g.eval_seconds, 2),
            "eval / train": f"{100 * ev / train:.0f} %" if train > 0 else "n/a",
            "final eval + analysis s / run": fmt_mean_se(
                g.final_eval_seconds + g.analysis_seconds, 2)}


def runtime_section(df, results) -> list[str]:
    rows = []
    for profile, p in df.groupby("profile", sort=False):
        rows += [runtime_row(g, profile, method)
                 for method, g in p.groupby("method", sort=False)]
        rows.append(runtime_row(p, profile, "all methods"))
    stacked = (df.stacked.fillna(1) > 1).any()
    out = ["## Runtime", "",
           "Seconds per run on the machine that produced the results (mean ± s.e.). "
           "*Periodic eval* is everything done every M iterations (eq. (4) copies, the W1 "
           "transports, mode coverage); *eval / train* is its total over the runs against "
           "their total training time (budget: 30 %). The final evaluation (2,500-point "
           "metrics) and the latent, quality and interpolation analyses run once."
           + (" Stacked runs' training seconds are their share of the stack (/ K), while "
              "each member is evaluated on its own, so stacking raises *eval / train*; "
              "a method with cheap steps (ALI's 1 + 1) shows it most." if stacked else ""),
           "", markdown_table(pd.DataFrame(rows)), ""]
    return out + wall_time_section(results, "convergence")


def diverged_section(df) -> list[str]:
    bad = df[~df.status.isin(TRAINED)]
    if bad.empty:
        return []
    items = [f"- `{r.run_id}` diverged at iteration {int(r.diverged_at)}"
             if r.status == "diverged" else f"- `{r.run_id}` failed: {r.error}"
             for r in bad.itertuples()]
    return ["## Diverged or failed runs (left out of every table above)", "", *items, ""]
