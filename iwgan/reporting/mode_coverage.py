"""reports/mode_coverage.md, rebuilt from results/ alone: per profile and preset, the
mode-coverage table (mean ± s.e. over seeds, and how many runs converged), C1's verdicts
(iwgan.reporting.verdicts) with the run-level flags, the published
numbers beside the literature-preset ones, quick against converged for every cell, how
far the quick numbers are from a longer run, a runtime table and the final-sample
figures, and every cell run under both protocols, identical beside tuned. A cell is one
config but the seed (``cell`` column): runs of other budgets or protocols are never
averaged together, and a row holds all of its cell's runs whatever their flags."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from iwgan.core.methods import METHOD_NAMES
from iwgan.data.mixtures import MIXTURES, get_mixture
from iwgan.engine.config import PROFILES, PROTOCOLS, make_config, same_recipe
from iwgan.engine.records import read_curves, read_json, read_results
from iwgan.metrics.continuation import judge
from iwgan.metrics.mixture import N_STD, run_score
from iwgan.metrics.plateau import HQ_ABS, MIN_EVALUATIONS, W1_REL
from iwgan.metrics.statistics import mean_estimate, welch
from iwgan.reporting.common import (
    AXES,
    PROFILE_ORDER,
    cells,
    draw_mixture,
    flag_values,
    fmt_mean_se,
    identical,
    markdown_table,
    on_three_axes,
    ordered,
    plot_on_axis,
    provenance_section,
    ran_continuation,
    recipe_text,
    reference_profile,
    rel,
    save_figure,
    seconds_note,
    settings_text,
    trained,
    updates_per_iteration,
    updates_text,
    wall_time_section,
    write_report,
)
from iwgan.reporting.literature import (
    BASELINES,
    SETUPS,
    budget_text,
    equivalence_section,
    published_rows,
)
from iwgan.reporting.verdicts import interval_text, mode_coverage_verdicts, seeds_text, share

METRIC_COLUMNS = ["modes", "hq_pct", "kl", "w1", "recon_error", "latent_mmd"]
PRESET_TEXT = {
    "paper": "the **paper** preset (the WGAN-GP toy generators the authors' code uses: ring "
             "radius 1.414 / std 0.0141, grid spacing 0.707 / std 0.0071, spiral std 0.02)",
    "literature": "the **literature** preset (VEEGAN/PacGAN protocol: ring radius 1 / std "
                  "0.01, grid spacing 2 / std 0.05; the literature has no spiral, so the "
                  "paper's spiral is used)",
}


def build_report(results: Path, reports: Path) -> Path:
    results, reports = Path(results), Path(reports)
    df = read_results(results / "mode_coverage.csv",
                      required=[*METRIC_COLUMNS, "status", "train_seconds", "command", "cell",
                                "converged"])
    mixtures = read_json(results / "mixtures.json", "run the mode-coverage grid (it writes it)")
    curves_path = results / "mode_coverage_curves.csv"
    curves = (read_curves(curves_path) if curves_path.exists()
              else pd.DataFrame(columns=["run_id", "iteration", "metric", "value"]))
    figures = reports / "figures"
    out = ["# Mode coverage on the Gaussian mixtures", "",
           "Rebuilt by `nox -s reports` from `results/mode_coverage.csv` alone; do not edit.",
           "", "## How to read it", "",
           f"Each run draws 2,500 samples G(z), z ~ N(0, I_5). A sample is **high quality "
           f"(HQ)** when it lies within {N_STD:g} standard deviations of its nearest mode "
           "centre, boundary **inclusive** (≤, as VEEGAN and GDPP; PacGAN counts strictly); "
           "a mode is **covered** when it is the nearest centre of at least one HQ sample. "
           "**KL** is that of the histogram of HQ samples over the modes against uniform "
           "(0 = balanced; n/a when no sample is HQ). **W1** is the exact 1-Wasserstein "
           "distance between the 2,500 samples and 2,500 fresh real draws, by optimal "
           "transport (POT's network simplex). For methods with an encoder, **recon** is the "
           "mean ||x − G(Q(x))|| on the real draws and **MMD(Q)** the IMQ-kernel MMD of "
           "Q(X) against N(0, I) (n/a: the method has no encoder). Cells are mean ± "
           "standard error over seeds.", "",
           "**Converged** counts the runs that finished learning by the plateau rule "
           "(`iwgan.metrics.plateau`): over the last quarter of training, on at least "
           f"{MIN_EVALUATIONS} of the run's {settings_text(df, 'curve_points', ' or ')} "
           "evaluations, a least-squares line "
           f"through W1 moves by at most {W1_REL:.0%} of its level plus W1's noise floor "
           f"and one through HQ % by at most {HQ_ABS:g} points. It says a run plateaued, not "
           "that it is good. n/a: the run is too short for the rule. **Collapsed** counts "
           "the runs with fewer than K/2 modes or under 5 % HQ at the end, **degraded "
           "late** those that were better during the last half of training than at its "
           "end (docs/verdicts.md states both; each row of results/ records them). "
           "**Stays converged** (where the runs ran `--continue-check`) counts the runs "
           "that, trained on for a quarter of their budget at a constant tenth of their "
           "rate, moved W1 and HQ % by less than the seed-to-seed spread of their cell and "
           "kept their modes (`iwgan.metrics.continuation`). A row "
           "holds all of its cell's runs: no mean is taken over the runs a flag selects.",
           ""]
    # Tables per protocol; the sections that compare profiles, presets or the literature
    # read the identical protocol's rows (a tuned run is never averaged with them).
    tuned_runs, df_all, df = df[df.protocol == "tuned"], df, identical(df)
    if "converged" not in set(df.profile):
        out += ["**No converged table yet.** `results/` holds no run of the `converged` "
                "profile: the recipe search (docs/converged.md) has not yet found one recipe "
                "with which all four methods plateau within the budget, so the tables below "
                "are of profiles whose runs are not all converged, and their verdicts are "
                "verdicts on those runs.", ""]
    else:
        out += converged_share(df)
    # the report leads with the protocol comparison (issue 26), then the tables
    out += protocols_section(results, tuned_runs)
    out += identical_vs_tuned(df_all)
    profiles = ordered(df_all["profile"], PROFILE_ORDER)
    for profile in profiles:
        for protocol, runs in ((p, df_all[df_all.protocol == p]) for p in PROTOCOLS):
            for preset in ordered(runs[runs.profile == profile]["preset"],
                                  ["paper", "literature"]):
                sub = runs[(runs.profile == profile) & (runs.preset == preset)]
                out += table_section(sub, profile, preset, mixtures, protocol)
                name = f"{profile}_{preset}" + ("" if protocol == "identical" else
                                                f"_{protocol}")
                fig = figures / f"mode_coverage_{name}.png"
                plot_samples(sub, results, mixtures, profile, preset, fig)
                out += [f"![Final samples, {profile} profile, {preset} preset"
                        + ("" if protocol == "identical" else f", {protocol} protocol")
                        + f"]({rel(fig, reports)})", "",
                        "Final samples (seed with the lowest number) in colour over the "
                        f"true mixture's {N_STD:g}-std discs (grey).", ""]
                out += curves_section(sub, curves, profile, preset, name, figures, reports)
                out += mode_coverage_verdicts(sub, curves)
    out += plateau_against_continuation(df_all)
    if len(df):   # the comparisons across profiles and with the literature: identical
        out += literature_section(df, results, tuned_runs)
        out += paper_beside_cpu(df)
        out += quick_vs_converged(df)
        out += quick_vs_long(df)
    out += runtime_section(df if len(df) else tuned_runs, results)
    out += provenance_section(df_all, profiles=True)
    return write_report(reports / "mode_coverage.md", "\n".join(out))


def is_converged(flags: pd.Series) -> pd.Series:
    """The ``converged`` column as booleans, however the CSV stored it (True, "True",
    1.0); a missing flag (the rule did not apply) reads False."""
    return flag_values(flags).eq(True)


def flag_count(cell: pd.DataFrame, column: str) -> str:
    """"k/n": of the cell's n trained runs, the k whose ``column`` flag is set (n/a: no
    run has it recorded, e.g. too short for the plateau rule)."""
    ok = trained(cell)
    known = flag_values(ok[column]).dropna() if column in ok else []
    if len(known) == 0:
        return "n/a"
    return f"{int(known.eq(True).sum())}/{len(ok)}"


def converged_count(cell: pd.DataFrame) -> str:
    return flag_count(cell, "converged")


def cell_rows(sub, mixtures, preset):
    """One row per cell: every run it holds, whatever its flags (a mean is never taken
    over the runs a flag selects), with the flags counted beside."""
    continued = ran_continuation(sub)
    for mixture in ordered(sub["mixture"], MIXTURES):
        k = len(mixtures[f"{mixture}-{preset}"]["centres"])
        for method in ordered(sub["method"], METHOD_NAMES):
            for _, runs in sub[(sub.mixture == mixture)
                               & (sub.method == method)].groupby("cell", sort=False):
                ok = trained(runs)
                diverged = runs[runs.status == "diverged"]
                note = ", ".join([f"seed {s} diverged at it. {int(i)}"
                                  for s, i in zip(diverged.seed, diverged.diverged_at)]
                                 + [f"seed {s} failed"
                                    for s in runs[runs.status == "failed"].seed])
                its = int(runs.iterations.iloc[0])
                per = updates_per_iteration(method, int(runs.n_critic.iloc[0]))
                yield {"mixture": mixture, "method": method,
                       "iterations": its, "G updates": its * per, "seeds": len(ok),
                       "converged": converged_count(runs),
                       **({"stays converged": flag_count(judge(runs), "continued_converged")}
                          if continued else {}),
                       "collapsed": flag_count(runs, "collapsed"),
                       "degraded late": flag_count(runs, "degraded_late"),
                       "modes (of K)": f"{fmt_mean_se(ok.modes, 1)} / {k}",
                       "HQ %": fmt_mean_se(ok.hq_pct, 1), "KL": fmt_mean_se(ok.kl, 3),
                       "W1": fmt_mean_se(ok.w1, 3),
                       "recon": fmt_mean_se(ok.recon_error, 3),
                       "MMD(Q)": fmt_mean_se(ok.latent_mmd, 4),
                       "diverged / failed": note or "–"}


# What a CPU run's ``device`` column holds (records.device_name: the processor's name);
# any other name is an accelerator's (torch.cuda.get_device_name).
CPU_NAMES = frozenset({"", "nan", "x86_64", "amd64", "i386", "i686", "aarch64", "arm64",
                       "arm", "ppc64le", "s390x", "riscv64"})


def accelerators(sub: pd.DataFrame) -> list[str]:
    """The accelerators (GPUs) that trained ``sub``'s runs, by name."""
    names = sub["device"].astype(str) if "device" in sub else pd.Series([], dtype=str)
    return sorted({d for d in names if d.lower() not in CPU_NAMES})


def budget_note(sub: pd.DataFrame, profile: str) -> str:
    """Said when the runs trained another budget than their profile's own."""
    own = PROFILES.get(profile, {}).get("iterations")
    iters = sorted(set(sub.iterations))
    if own is None or iters == [own]:
        return ""
    return (f" The profile's own budget is {own:,} iterations: these runs trained "
            f"{', '.join(f'{i:,}' for i in iters)} (an override, in their run ids), so they "
            "are not the profile's numbers at its budget.")


def w1_note(sub: pd.DataFrame) -> str:
    """Said when some runs have no W1 (POT was missing where they ran), with the reason."""
    if "w1_unavailable" not in sub:
        return ""
    missing = sub["w1_unavailable"].dropna()
    if missing.empty:
        return ""
    return (f" W1 and the converged flag are empty for {len(missing)} runs: "
            f"{'; '.join(sorted(set(missing)))}.")


def table_section(sub, profile, preset, mixtures, protocol="identical") -> list[str]:
    rows = list(cell_rows(sub, mixtures, preset))
    iters = sorted(set(sub.iterations))
    gpus = accelerators(sub)
    header = (f"## {profile} profile, {preset} preset"
              + ("" if protocol == "identical" else f", {protocol} protocol")
              + (f", on {', '.join(gpus)}" if gpus else ""))
    text = (f"Protocol: 3-std mode coverage under {PRESET_TEXT[preset]}; profile "
            f"`{profile}`, {', '.join(map(str, iters))} iterations, width "
            f"{', '.join(map(str, sorted(set(sub.width))))} of Appendix D1"
            + (f", {recipe_text(sub)}." if "lr" in sub else "."))
    if protocol == "tuned":
        text += (" Each method trains at its own selected recipe (the settings above are "
                 "their union; \"Protocols: identical and tuned\" lists each).")
    if gpus:
        text += (f" Trained on {', '.join(gpus)} (the `device` column of "
                 "results/mode_coverage.csv).")
    known = trained(sub).converged.dropna()
    verdict = (f" {int(is_converged(known).sum())} of {len(known)} runs "
               "converged." if len(known) else " The rule does not apply to these runs "
               "(too short).")
    return [header, "", text + budget_note(sub, profile) + verdict + w1_note(sub), "",
            markdown_table(pd.DataFrame(rows)), ""]


CPU_PROFILES = ("quick", "converged")   # the quarter-width profiles trained on the CPU


def protocols_section(results: Path, tuned_runs: pd.DataFrame) -> list[str]:
    """The two protocols, and the recipes the tuned protocol's search selected
    (results/tuning/selected.json; docs/tuning.md)."""
    out = ["## Protocols: identical and tuned", "",
           "Every table below is of one protocol. **identical** (the paper's comparison): "
           "every method with the profile's one recipe, structure, learning rate, n_critic "
           "and budget. **tuned**: each method x preset at the recipe an equal tuning "
           "budget selected (Lucic et al. 2018): the same number of configurations per "
           "method from a stated space holding its published recipe, the same iterations, "
           "one score stated before the runs (mean over mixtures and tuning seeds >= 1,000 "
           "of modes/K x HQ %/100), the reported seeds 0.. disjoint (docs/tuning.md).", ""]
    path = results / "tuning" / "selected.json"
    if not path.exists():
        return out + ["No tuned search has run yet (`python -m iwgan tune`, `nox -s tune`), "
                      "so every row here is of the identical protocol.", ""]
    rows, selected = [], read_json(path, "run `python -m iwgan tune`")
    for profile, preset, method, chosen in selections(selected):
        rows.append({"profile": profile, "preset": preset, "method": method,
                     "selected recipe": ", ".join(
                         f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in sorted(chosen["recipe"].items())) or "–",
                     "candidate": f"{chosen['candidate']} of "
                                  f"{len(chosen['candidates'])}",
                     "published recipe": "yes" if chosen["candidate"] == 0 else "no",
                     "score": f"{chosen['score']:.3f}",
                     "iterations": f"{chosen['iterations']:,}",
                     "mixtures": ", ".join(chosen["mixtures"]),
                     "tuning seeds": ", ".join(map(str, chosen["tuning_seeds"]))})
    made = (f"{len(tuned_runs)} tuned run(s) are in the tables below." if len(tuned_runs)
            else "No reported run of the tuned protocol yet (`python -m iwgan mode-coverage "
            "--protocol tuned`).")
    return out + ["The selected recipes (`results/tuning/selected.json`; candidate 0 is the "
                  "published recipe). " + made, "", markdown_table(pd.DataFrame(rows)), "",
                  *selection_margin(results, selected)]


def selections(selected: dict):
    """(profile, preset, method, selection) for each selection of ``selected.json``,
    methods in the suite's order."""
    for profile, presets in selected.items():
        for preset, methods in presets.items():
            for method in ordered(pd.Series(list(methods)), METHOD_NAMES):
                yield profile, preset, method, methods[method]


def identical_candidate(profile: str, method: str, candidates: list[dict]) -> int | None:
    """The index of the candidate that is the identical protocol's recipe at ``profile``
    (None where the space lacks it)."""
    cfg = make_config(profile, method=method)
    for c in candidates:
        recipe = c["recipe"]
        held = {k: getattr(cfg, k) for k in recipe if k != "options"}
        held["options"] = {k: cfg.method_options.get(k) for k in recipe.get("options", {})}
        if same_recipe(held, {"options": {}, **recipe}):
            return c["candidate"]
    return None


def selection_margin(results: Path, selected: dict) -> list[str]:
    """How far the search separated each selected candidate from the runner-up and from
    the identical protocol's recipe: the difference of run scores paired by mixture and
    tuning seed, with its 95 % t interval (docs/tuning.md, "Near ties")."""
    path = results / "tuning" / "search.csv"
    if not path.exists():
        return []
    search = read_results(path, run_first="run `python -m iwgan tune`")
    rows, close = [], 0
    for profile, preset, method, chosen in selections(selected):
        runs = search[(search.profile == profile) & (search.preset == preset)
                      & (search.method == method)]
        scores = runs.assign(score=[
            run_score(r, len(get_mixture(r["mixture"], preset).centres))
            for _, r in runs.iterrows()]).pivot_table(
            index=["mixture", "seed"], columns="candidate", values="score")
        mean = {c["candidate"]: c["score"] for c in chosen["candidates"]}
        best = chosen["candidate"]
        runner = max((k for k in mean if k != best), key=lambda k: (mean[k], -k))
        ident = identical_candidate(profile, method, chosen["candidates"])
        to_runner = mean_estimate(scores[best] - scores[runner])
        close += not to_runner.interval()[0] > 0    # too few pairs to tell: not resolved
        rows.append({
            "profile": profile, "preset": preset, "method": method,
            "pairs": len(scores), "selected (score)": f"{best} ({mean[best]:.3f})",
            "runner-up (score)": f"{runner} ({mean[runner]:.3f})",
            "selected − runner-up [95 %]": interval_text(to_runner, sign=True),
            "identical recipe (score)": "not in the space" if ident is None else
            f"{ident} ({mean[ident]:.3f})",
            "selected − identical [95 %]": "–" if ident is None else
            "selected" if ident == best else
            interval_text(mean_estimate(scores[best] - scores[ident]), sign=True)})
    if not rows:
        return []
    return ["How far the search separated its choice (docs/tuning.md, \"Near ties\"): per "
            "method x preset, the selected candidate's score minus the runner-up's and "
            "minus the identical protocol's recipe's, paired by mixture and tuning seed, "
            "with the 95 % t interval over the pairs. "
            "An interval that holds 0 is a near tie the search's seeds did not resolve; "
            "the rule stated before the search (the highest mean score) still selects, "
            f"and is not changed after it. {close} of {len(rows)} selections are within "
            "such a near tie of their runner-up.", "", markdown_table(pd.DataFrame(rows)),
            ""]


MODE_COVERAGE_METRICS = {"modes": ("modes", 1), "HQ %": ("hq_pct", 1), "W1": ("w1", 3)}


def identical_vs_tuned(df_all: pd.DataFrame) -> list[str]:
    """Every profile x preset x mixture x method run under both protocols at one budget:
    the identical protocol's mean beside the tuned one's, and the difference tuned −
    identical with its Welch 95 % interval (each protocol its own runs, never pooled)."""
    if "protocol" not in df_all:
        return []
    ok, rows = trained(df_all), []
    for profile in ordered(ok.profile, PROFILE_ORDER):
        for preset in ordered(ok[ok.profile == profile].preset, ["paper", "literature"]):
            sub = ok[(ok.profile == profile) & (ok.preset == preset)]
            for mixture, method, cell in cells(sub):
                tuned = cell[cell.protocol == "tuned"]
                ident = cell[(cell.protocol == "identical")
                             & cell.iterations.isin(set(tuned.iterations))]
                if tuned.empty or ident.empty:
                    continue
                row = {"profile": profile, "preset": preset, "mixture": mixture,
                       "method": method, "iterations": ", ".join(
                           f"{i:,}" for i in sorted(set(tuned.iterations))),
                       "seeds (identical / tuned)": f"{len(ident)} / {len(tuned)}"}
                for label, (column, digits) in MODE_COVERAGE_METRICS.items():
                    a, b = ident[column].mean(), tuned[column].mean()
                    row[label] = f"{a:.{digits}f} → {b:.{digits}f}"
                    row[f"Δ {label} [95 %]"] = interval_text(
                        welch(tuned[column], ident[column]), digits, sign=True)
                for flag in ("converged", "collapsed"):
                    row[flag] = f"{flag_count(ident, flag)} → {flag_count(tuned, flag)}"
                rows.append(row)
    if not rows:
        return []
    return ["## Identical against tuned, every cell", "",
            "Each cell run under both protocols at the same budget: the identical "
            "protocol's mean over seeds → the tuned protocol's, and the difference tuned − "
            "identical with its Welch 95 % t interval over the two sets of seeds (an "
            "interval that excludes 0 is a measured effect of the tuning; the seeds of the "
            "two protocols are the same numbers, but their runs differ in recipe, so they "
            "are not paired). Flags: identical → tuned counts.", "",
            markdown_table(pd.DataFrame(rows)), ""]


def plateau_against_continuation(df_all: pd.DataFrame) -> list[str]:
    """Of the runs that ran the continuation check, per profile x preset x protocol and
    method: how the plateau rule's flag and the check's verdict agree, and the share of
    runs whose flag the check changes (docs/verdicts.md states it is reported)."""
    if not ran_continuation(df_all):
        return []
    judged = judge(trained(df_all))
    judged = judged[judged.continued_converged.notna()]
    rows = []
    for (profile, preset, protocol), group in judged.groupby(
            ["profile", "preset", "protocol"], sort=False):
        for method in [*ordered(group.method, METHOD_NAMES), "all"]:
            runs = group if method == "all" else group[group.method == method]
            plateau = is_converged(runs.converged)
            stays = runs.continued_converged.astype(bool)
            rows.append({"profile": profile, "preset": preset, "protocol": protocol,
                         "method": method, "runs judged": len(runs),
                         "plateau and stays": int((plateau & stays).sum()),
                         "plateau, not stays": int((plateau & ~stays).sum()),
                         "stays, not plateau": int((~plateau & stays).sum()),
                         "neither": int((~plateau & ~stays).sum()),
                         "flag changed [95 %]": share(plateau != stays)})
    return ["## The plateau flag against the continuation check", "",
            "Every run that ran `--continue-check` and could be judged (its cell has at "
            "least two seeds): *plateau* is the plateau rule's `converged` flag at the "
            "budget, *stays* the continuation check's verdict (`iwgan.metrics."
            "continuation`). *Plateau, not stays* are runs the schedule froze that moved, "
            "lost a mode or diverged once trained on; *flag changed* is the share of runs "
            "whose verdict the check reverses (Wilson 95 % interval). Each profile, preset "
            "and protocol is its own rows.", "",
            markdown_table(pd.DataFrame(rows)), ""]


def paper_beside_cpu(df) -> list[str]:
    """The paper profile's runs trained on a GPU, each cell beside the same cell of the
    quarter-width CPU profiles (their own rows, never averaged together)."""
    paper = df[df.profile == "paper"]
    gpus = accelerators(paper)
    if not gpus:
        return []
    gpu_rows = paper[paper.device.astype(str).isin(gpus)]
    rows = []
    for preset in ordered(gpu_rows.preset, ["paper", "literature"]):
        for mixture in ordered(gpu_rows.mixture, MIXTURES):
            for method in ordered(gpu_rows.method, METHOD_NAMES):
                same = df[(df.preset == preset) & (df.mixture == mixture)
                          & (df.method == method)]
                if gpu_rows[(gpu_rows.preset == preset) & (gpu_rows.mixture == mixture)
                            & (gpu_rows.method == method)].empty:
                    continue
                for profile in ("paper", *CPU_PROFILES):
                    runs = same[same.profile == profile]
                    if profile == "paper":
                        runs = runs[runs.device.astype(str).isin(gpus)]
                    for _, cell in runs.groupby("cell", sort=False):
                        ok = trained(cell)
                        rows.append({
                            "preset": preset, "mixture": mixture, "method": method,
                            "profile": profile, "device": ", ".join(
                                sorted(set(cell.device.astype(str)))),
                            "width": f"{cell.width.iloc[0]:g}",
                            "batch": int(cell.batch_size.iloc[0]),
                            "iterations": f"{int(cell.iterations.iloc[0]):,}",
                            "seeds": len(ok), "converged": converged_count(cell),
                            "modes": fmt_mean_se(ok.modes, 1), "HQ %": fmt_mean_se(ok.hq_pct, 1),
                            "W1": fmt_mean_se(ok.w1, 3)})
    return [f"## The paper profile on {', '.join(gpus)} beside the quarter-width CPU runs",
            "", "Each cell the GPU trained at the `paper` profile (Appendix D1's full widths, "
            "batch 256, Adam 1e-4, 5 critic steps) next to the same cell at the quarter-width "
            "profiles trained on the CPU (`quick`, `converged`): mean ± s.e. over each row's "
            "seeds, one row per profile and budget, never averaged across them. Budgets, "
            "widths and devices differ between rows, so this shows what the paper's scale "
            "changes, not a comparison of methods (each table above compares methods within "
            "one profile).", "", markdown_table(pd.DataFrame(rows)), ""]


def plot_samples(sub, results, mixtures, profile, preset, path) -> None:
    methods = ordered(sub["method"], METHOD_NAMES)
    mixes = ordered(sub["mixture"], MIXTURES)
    fig, axes = plt.subplots(len(methods), len(mixes), squeeze=False,
                             figsize=(2.6 * len(mixes), 2.6 * len(methods)))
    palette = plt.get_cmap("tab10")
    for i, method in enumerate(methods):
        for j, mixture in enumerate(mixes):
            ax = axes[i, j]
            spec = mixtures[f"{mixture}-{preset}"]
            draw_mixture(ax, spec["centres"], spec["std"], grey="0.75")
            cell = sub[(sub.mixture == mixture) & (sub.method == method)]
            cell = trained(cell).sort_values("seed")
            title = f"{method} · {mixture}"
            if len(cell):
                run_id = cell.iloc[0]["run_id"]
                f = results / "mode_coverage_samples" / f"{run_id}.npy"
                if f.exists():
                    s = np.load(f)
                    ax.scatter(s[:, 0], s[:, 1], s=1.5, color=palette(i), alpha=0.5, lw=0)
                    title += f" (seed {cell.iloc[0]['seed']})"
            else:
                ax.text(0.5, 0.5, "diverged / not run", ha="center", transform=ax.transAxes)
            ax.set_title(title, fontsize=8)
    save_figure(fig, path)


CURVE_METRICS = (("modes", "modes covered"), ("hq_pct", "HQ %"))


def curves_section(sub, curves, profile, preset, name, figures: Path,
                   reports: Path) -> list[str]:
    """Modes covered and HQ % over training, each against iterations, generator updates
    and training seconds (mean over seeds, band ± s.e.), one row per mixture and metric."""
    runs = trained(sub)
    c = curves[curves.metric.isin([m for m, _ in CURVE_METRICS])]
    c = on_three_axes(c, runs) if {"mixture", "method"} <= set(c) else c.iloc[:0]
    if c.empty:
        return []
    methods = ordered(runs["method"], METHOD_NAMES)
    mixes = ordered(c["mixture"], MIXTURES)
    palette = plt.get_cmap("tab10")
    panels = [(mixture, metric, label) for mixture in mixes for metric, label in CURVE_METRICS]
    fig, axes = plt.subplots(len(panels), len(AXES), squeeze=False,
                             figsize=(3.2 * len(AXES), 2.3 * len(panels)))
    for i, (mixture, metric, label) in enumerate(panels):
        for j, axis in enumerate(AXES):
            ax = axes[i, j]
            plot_on_axis(ax, c[(c.mixture == mixture) & (c.metric == metric)], axis,
                         methods, palette)
            ax.set(title=f"{mixture}: {label}", xlabel=AXES[axis], ylabel="")
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    path = figures / f"mode_coverage_curves_{name}.png"
    save_figure(fig, path)
    per_it = updates_text(runs)
    return [f"![Modes and HQ % over training, {profile} profile, {preset} preset]"
            f"({rel(path, reports)})", "",
            "Modes covered and HQ % over training (mean over seeds, band ± s.e.), each "
            "against three axes: iterations; generator updates (iterations × the method's "
            f"generator steps per iteration, from its phases: {per_it}); and training "
            "seconds (evaluation excluded, as each curve recorded them, a stacked run's its "
            "share of its stack's; mean over seeds at each evaluation). At equal iterations "
            "iWGAN has made n_critic times the generator updates of a baseline; the "
            "verdicts below compare at the end of training." + seconds_note(c), ""]


def converged_by_method(runs) -> str:
    """"iwgan 3/5, wgan_gp 4/5, ...": each method's converged runs."""
    return ", ".join(f"{m} {converged_count(runs[runs.method == m])}"
                     for m in ordered(runs["method"], METHOD_NAMES))


def converged_share(df) -> list[str]:
    """The lead line: how many runs of the converged profile did finish learning."""
    runs = trained(df[df.profile == "converged"])
    return [f"**The `converged` profile leads** (docs/converged.md): "
            f"{converged_count(runs)} of its runs converged by the rule "
            f"({converged_by_method(runs)}). "
            "Its name is the recipe's, not a verdict: each table says how many of its runs "
            "converged.", ""]


def literature_section(df, results: Path, tuned: pd.DataFrame | None = None) -> list[str]:
    """The identical protocol's runs (``df``) beside the published numbers; the
    equivalence verdicts per protocol, the ``tuned`` runs' beside (never pooled)."""
    profile = reference_profile(df)
    sub = trained(df[(df.profile == profile) & (df.preset == "literature")])
    both = sub if tuned is None else pd.concat(
        [sub, trained(tuned[(tuned.profile == profile) & (tuned.preset == "literature")])])
    if sub.empty:
        return []
    rows = []
    for mixture in ("ring", "grid"):
        mix = sub[sub.mixture == mixture]
        if mix.empty:
            continue
        for method in ordered(mix["method"], METHOD_NAMES):
            for _, cell in mix[mix.method == method].groupby("cell", sort=False):
                rows.append({"mixture": mixture, "source": f"this suite ({profile})",
                             "method": method, "modes": fmt_mean_se(cell.modes, 1),
                             "HQ %": fmt_mean_se(cell.hq_pct, 1),
                             "KL": fmt_mean_se(cell.kl, 2),
                             "runs": f"{len(cell)} (converged {converged_count(cell)})",
                             "budget": budget_text(cell)})
        rows += published_rows(mixture)
    setups = [f"- {source}: {text}." for source, (text, _) in SETUPS.items()]
    return ["## The literature beside the suite (literature preset)", "",
            "Published numbers under the standard protocol (`../shared/docs/protocols.md`) "
            f"next to this suite's `{profile}` runs on the literature presets (mean ± s.e. "
            "over seeds). They come from other networks and budgets, so they are context, "
            "not targets: the suite compares methods only under its own identical setup. "
            "Budgets are given in iterations and generator updates: iWGAN takes n_critic "
            "generator steps an iteration (Algorithm 1), the baselines one.", "",
            markdown_table(pd.DataFrame(rows)), "",
            "Setups behind the published numbers:", "", *setups, "",
            "This suite: the shared Appendix D1 networks at the profile's width, one recipe "
            "for every method.", "",
            *equivalence_section(both, profile),
            *measured_budget_effect(sub, results)]


BUDGET_RUNS = ("converged_search", "budget_effect")   # folders of results/ read below


def search_runs(results: Path) -> pd.DataFrame:
    """The finished literature-preset runs trained beside the tables: the recipe search's
    (results/converged_search/*.csv, docs/converged.md) and the measured budget runs of
    the selected recipes (results/budget_effect/*.csv, docs/tuning.md), each named by its
    file."""
    frames = [pd.read_csv(path).assign(search=path.stem)
              for folder in BUDGET_RUNS for path in sorted((results / folder).glob("*.csv"))
              if not path.stem.endswith("-curves")]
    if not frames:
        return pd.DataFrame(columns=["method", "mixture", "iterations"])
    runs = trained(pd.concat(frames, ignore_index=True))
    return runs[runs.preset == "literature"]


def measured_budget_effect(sub: pd.DataFrame, results: Path) -> list[str]:
    """Per baseline and mixture, the same networks trained longer than the table's budget
    (:func:`search_runs`): a measured budget effect beside the equivalence verdicts, one
    item per file and budget (mean ± s.e. where it holds several seeds)."""
    search, items = search_runs(results), []
    for mixture in ("ring", "grid"):
        for method in [m for m in ordered(sub.method, METHOD_NAMES) if m in BASELINES]:
            cell = sub[(sub.mixture == mixture) & (sub.method == method)]
            if cell.empty:
                continue
            budget = int(cell.iterations.max())
            longer = search[(search.method == method) & (search.mixture == mixture)
                            & (search.iterations > budget)]
            if longer.empty:
                continue
            measured = "; ".join(
                f"{int(r.iterations):,} iterations (batch {int(r.batch_size)}, n_critic "
                f"{int(r.n_critic)}, lr {r.lr:g} {r.lr_schedule}, "
                f"{seeds_phrase(runs.seed)}, `{r.search}`): "
                f"{fmt_mean_se(runs.modes, 1 if len(runs) > 1 else 0)} modes, "
                f"{fmt_mean_se(runs.hq_pct, 1)} % HQ, converged {flag_count(runs, 'converged')}, "
                f"collapsed {flag_count(runs, 'collapsed')}"
                for _, runs in longer.groupby(["search", "iterations"], sort=True)
                for r in runs.head(1).itertuples())
            items.append(f"- **{method}, {mixture}** (table: {budget:,} iterations): "
                         f"{measured}.")
    if not items:
        return []
    return ["Measured budget effect: the same networks trained longer than the table's "
            "budget (results/converged_search: the recipe search, one seed each; "
            "results/budget_effect: the selected recipes at a published budget), beside "
            "the verdicts and not part of them:", "", *items, ""]


def seeds_phrase(seeds: pd.Series) -> str:
    return (f"seed {int(seeds.iloc[0])}" if len(seeds) == 1
            else f"seeds {seeds_text(sorted(int(s) for s in seeds))}")


def quick_vs_converged(df, metrics=MODE_COVERAGE_METRICS, what: str = "") -> list[str]:
    """Every cell run under both the quick and the converged profile: quick → converged,
    the mean over seeds of each ``metrics`` column (label: (column, decimals))."""
    if not {"quick", "converged"} <= set(df.profile):
        return []
    rows = []
    ok = trained(df)
    for preset in ordered(ok.preset, ["paper", "literature"]):
        for mixture in ordered(ok.mixture, MIXTURES):
            for method in ordered(ok.method, METHOD_NAMES):
                q = ok[(ok.profile == "quick") & (ok.preset == preset) & (ok.mixture == mixture)
                       & (ok.method == method)]
                c = ok[(ok.profile == "converged") & (ok.preset == preset)
                       & (ok.mixture == mixture) & (ok.method == method)]
                if q.empty or c.empty:
                    continue
                row = {"preset": preset, "mixture": mixture, "method": method,
                       "seeds quick / converged": f"{len(q)} / {len(c)}",
                       "converged (quick → converged)":
                           f"{converged_count(q)} → {converged_count(c)}"}
                for label, (column, digits) in metrics.items():
                    a, b = q[column].mean(), c[column].mean()
                    row[label] = ("n/a" if pd.isna(a) and pd.isna(b)
                                  else f"{a:.{digits}f} → {b:.{digits}f}")
                rows.append(row)
    if not rows:
        return []
    return ["## Quick against converged, every cell", "",
            "The quick profile is the 15-minute smoke run; the converged profile is the "
            f"reference (docs/converged.md). Means over seeds, quick → converged{what}.", "",
            markdown_table(pd.DataFrame(rows)), ""]


def quick_vs_long(df) -> list[str]:
    """Cells run under both the quick and the long profile: how far quick is from longer."""
    if not {"quick", "long"} <= set(df.profile):
        return []
    keys = ["method", "mixture", "preset", "seed"]
    q = df[df.profile == "quick"].set_index(keys)
    lg = df[df.profile == "long"].set_index(keys)
    common = q.index.intersection(lg.index)
    if len(common) == 0:
        return []
    rows = []
    for key in common:
        a, b = q.loc[key], lg.loc[key]
        rows.append({"method": key[0], "mixture": key[1], "preset": key[2], "seed": key[3],
                     "iterations quick → long": f"{a.iterations} → {b.iterations}",
                     "modes": f"{a.modes:g} → {b.modes:g}",
                     "HQ %": f"{a.hq_pct:.1f} → {b.hq_pct:.1f}",
                     "KL": f"{a.kl:.3f} → {b.kl:.3f}", "W1": f"{a.w1:.3f} → {b.w1:.3f}"})
    return ["## How far the quick numbers are from a longer run", "",
            "The quick profile is not converged. These cells were re-run under the `long` "
            "profile (same networks and settings, 5× the iterations); each cell shows "
            "quick → long for the same seed.", "",
            markdown_table(pd.DataFrame(rows)), ""]


def runtime_section(df, results) -> list[str]:
    rows = []
    by_device = bool(accelerators(df))   # runs from a GPU and a CPU: say which is which
    keys = ["profile", "method"] + (["device"] if by_device else [])
    for key, g in df.groupby(keys, sort=False):
        updates = {int(i) * updates_per_iteration(key[1], int(n))
                   for i, n in zip(g.iterations, g.n_critic)}
        rows.append({"profile": key[0], "method": key[1],
                     **({"device": key[2]} if by_device else {}), "runs": len(g),
                     "iterations": ", ".join(map(str, sorted(set(g.iterations)))),
                     "G updates": ", ".join(map(str, sorted(updates))),
                     "train s / run": fmt_mean_se(g.train_seconds, 1),
                     "eval s / run": fmt_mean_se(g.eval_seconds, 1)})
    out = ["## Runtime", "", "Seconds per run on the machine that produced the results "
           "(mean ± s.e.), beside the run's iterations and generator updates (iterations × "
           "the method's generator steps per iteration, read from its phases).", "",
           markdown_table(pd.DataFrame(rows)), ""]
    return out + wall_time_section(results, "mode_coverage")


