"""reports/mode_coverage.md, rebuilt from results/ alone: per profile and preset, the
mode-coverage table (mean ± s.e. over seeds), the command that produced it, how far the
quick numbers are from a longer run, a runtime table and the final-sample figures."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from iwgan.core.methods import METHOD_NAMES
from iwgan.data.mixtures import MIXTURES
from iwgan.engine.records import read_results
from iwgan.metrics.mixture import N_STD
from iwgan.reporting.common import (
    fmt_mean_se,
    markdown_table,
    ordered,
    provenance_section,
    rel,
    save_figure,
    wall_time_section,
    write_report,
)

METRIC_COLUMNS = ["modes", "hq_pct", "kl", "w1", "recon_error", "latent_mmd"]
PROFILE_ORDER = ["paper", "quick", "long", "tiny"]
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
                      required=[*METRIC_COLUMNS, "status", "train_seconds", "command"])
    mixtures = json.loads((results / "mixtures.json").read_text())
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
           "standard error over seeds.", ""]
    profiles = ordered(df["profile"], PROFILE_ORDER)
    for profile in profiles:
        for preset in ordered(df[df.profile == profile]["preset"], ["paper", "literature"]):
            sub = df[(df.profile == profile) & (df.preset == preset)]
            out += table_section(sub, profile, preset, mixtures)
            fig = figures / f"mode_coverage_{profile}_{preset}.png"
            plot_samples(sub, results, mixtures, profile, preset, fig)
            out += [f"![Final samples, {profile} profile, {preset} preset]"
                    f"({rel(fig, reports)})", "",
                    "Final samples (seed with the lowest number) in colour over the true "
                    f"mixture's {N_STD:g}-std discs (grey).", ""]
    out += quick_vs_long(df)
    out += runtime_section(df, results)
    out += provenance_section(df, profiles=True)
    return write_report(reports / "mode_coverage.md", "\n".join(out))


def table_section(sub, profile, preset, mixtures) -> list[str]:
    rows = []
    for mixture in ordered(sub["mixture"], MIXTURES):
        k = len(mixtures[f"{mixture}-{preset}"]["centres"])
        for method in ordered(sub["method"], METHOD_NAMES):
            cell = sub[(sub.mixture == mixture) & (sub.method == method)]
            ok = cell[cell.status != "diverged"]
            diverged = cell[cell.status == "diverged"]
            note = ", ".join(f"seed {s} diverged at it. {int(i)}"
                             for s, i in zip(diverged.seed, diverged.diverged_at))
            rows.append({
                "mixture": mixture, "method": method, "seeds": len(ok),
                "modes (of K)": f"{fmt_mean_se(ok.modes, 1)} / {k}",
                "HQ %": fmt_mean_se(ok.hq_pct, 1), "KL": fmt_mean_se(ok.kl, 3),
                "W1": fmt_mean_se(ok.w1, 3), "recon": fmt_mean_se(ok.recon_error, 3),
                "MMD(Q)": fmt_mean_se(ok.latent_mmd, 4), "diverged": note or "–"})
    iters = sorted(set(sub.iterations))
    header = f"## {profile} profile, {preset} preset"
    text = (f"Protocol: 3-std mode coverage under {PRESET_TEXT[preset]}; profile "
            f"`{profile}`, {', '.join(map(str, iters))} iterations, width "
            f"{', '.join(map(str, sorted(set(sub.width))))} of Appendix D1.")
    table = pd.DataFrame(rows)
    return [header, "", text, "", markdown_table(table), ""]


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
            centres, std = np.asarray(spec["centres"]), spec["std"]
            for c in centres:
                ax.add_patch(plt.Circle(c, N_STD * std, color="0.75", lw=0))
            cell = sub[(sub.mixture == mixture) & (sub.method == method)]
            cell = cell[cell.status != "diverged"].sort_values("seed")
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
            pad = 4 * std + 0.15 * np.ptp(centres, axis=0).max()
            ax.set_xlim(centres[:, 0].min() - pad, centres[:, 0].max() + pad)
            ax.set_ylim(centres[:, 1].min() - pad, centres[:, 1].max() + pad)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
    save_figure(fig, path)


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
    for (profile, method), g in df.groupby(["profile", "method"], sort=False):
        rows.append({"profile": profile, "method": method, "runs": len(g),
                     "iterations": ", ".join(map(str, sorted(set(g.iterations)))),
                     "train s / run": fmt_mean_se(g.train_seconds, 1),
                     "eval s / run": fmt_mean_se(g.eval_seconds, 1)})
    out = ["## Runtime", "", "Seconds per run on the machine that produced the results "
           "(mean ± s.e.).", "", markdown_table(pd.DataFrame(rows)), ""]
    return out + wall_time_section(results, "mode_coverage")


