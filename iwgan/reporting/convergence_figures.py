"""The sections of reports/convergence.md that draw the paper's figures, each with its
table: the duality gap and W1 over training (Figure 2), the latent space (Figure 3), the
quality score (Figure 4) and interpolations (Figure 8), from
``results/convergence_artifacts/<run>.npz``."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from iwgan.core.methods import METHOD_NAMES
from iwgan.data.mixtures import MIXTURES, get_mixture
from iwgan.reporting.common import (
    AXES,
    cells,
    draw_mixture,
    fmt_mean_se,
    markdown_table,
    methods_with,
    on_three_axes,
    ordered,
    plot_on_axis,
    rel,
    save_figure,
    seconds_note,
    updates_text,
)


def first_seed_run(sub, method, mixture):
    cell = sub[(sub.method == method) & (sub.mixture == mixture)].sort_values("seed")
    return cell.iloc[0] if len(cell) else None


def artifacts(results: Path, run_id: str):
    path = results / "convergence_artifacts" / f"{run_id}.npz"
    return np.load(path) if path.exists() else None


def figure2_section(sub, cur, results, figures, reports, tag) -> list[str]:
    out = ["### Figure 2: the duality gap and W1 against iterations, generator updates and "
           "training seconds, and the samples", ""]
    methods = ordered(sub["method"], METHOD_NAMES)
    palette = plt.get_cmap("tab10")
    cur = on_three_axes(cur, sub)
    for mixture_name in ordered(sub["mixture"], MIXTURES):
        mixture = get_mixture(mixture_name, sub.iloc[0].preset)
        ref = first_seed_run(sub, methods[0], mixture_name)
        arts = {m: artifacts(results, r.run_id) for m in methods
                if (r := first_seed_run(sub, m, mixture_name)) is not None}
        iters = next((a["iterations"] for a in arts.values() if a is not None), np.array([0]))
        picks = sorted(set(np.unique(np.round(np.linspace(0, len(iters) - 1, 5)).astype(int))))
        columns = max(len(picks), 2)
        fig = plt.figure(figsize=(2.2 * max(columns, 5), 5.6 + 2.0 * len(methods)))
        outer = fig.add_gridspec(2, 1, height_ratios=[5.6, 2.0 * len(methods)], hspace=0.25)
        top = outer[0].subgridspec(2, len(AXES), hspace=0.55, wspace=0.25)
        bottom = outer[1].subgridspec(len(methods), columns, hspace=0.35)
        c = cur[cur.mixture == mixture_name]
        threshold = ref.w1_threshold if ref is not None else float("nan")
        for row, (metric, title) in enumerate((("dual_gap", "duality gap"),
                                               ("w1", "exact W1"))):
            for col, axis in enumerate(AXES):
                ax = fig.add_subplot(top[row, col])
                plot_on_axis(ax, c[c.metric == metric], axis, methods, palette)
                if metric == "dual_gap":
                    ax.axhline(0, color="0.4", lw=0.6)
                    ax.set_yscale("symlog", linthresh=0.05)
                else:
                    if math.isfinite(threshold):
                        ax.axhline(threshold, color="0.4", ls="--", lw=0.8,
                                   label="W1 threshold")
                    ax.set_yscale("log")
                ax.set(title=f"{mixture_name}: {title}", xlabel=AXES[axis], ylabel="")
                if col == 0:
                    ax.legend(fontsize=7)
        for i, method in enumerate(methods):
            a = arts.get(method)
            for j, k in enumerate(picks):
                ax = fig.add_subplot(bottom[i, j])
                draw_mixture(ax, mixture.centres, mixture.std)
                if a is not None and k < len(a["snapshots"]):
                    s = a["snapshots"][k]
                    ax.scatter(s[:, 0], s[:, 1], s=1.5, color=palette(i), alpha=0.6, lw=0)
                    ax.set_title(f"{method} · it {int(a['iterations'][k])}", fontsize=7)
        path = figures / f"convergence_{tag}_{mixture_name}.png"
        save_figure(fig, path)
        out += [f"![Duality gap, W1 and samples on {mixture_name}]({rel(path, reports)})", ""]
    per_it = updates_text(sub)
    out += ["Top: mean over seeds (band: ± s.e.) of the duality-gap estimate and of the "
            "exact W1 (log scale; dashed: the W1 threshold), the same curves on three "
            "axes: iterations; generator updates (iterations × the method's generator steps "
            f"per iteration, from its phases: {per_it}); and training seconds (evaluation "
            "excluded, as each curve recorded them, a stacked run's its share of its "
            "stack's; mean over seeds at each evaluation)." + seconds_note(cur)
            + " Below: 400 samples G(z) of the lowest seed at chosen evaluations, over the "
            "modes' 3-std discs (grey).", ""]
    return out


def latent_section(sub, results, figures, reports, tag) -> list[str]:
    encoders = methods_with(sub, "latent_mmd")   # read from the rows: no latent, no Q
    methods = [m for m in ordered(sub["method"], METHOD_NAMES) if m in encoders]
    out = ["### The latent space: Q(X) against N(0, I_5) (Figure 3)", ""]
    rows = []
    for mixture, method, c in cells(sub):
        enc = method in encoders
        rows.append({
            "mixture": mixture, "method": method, "seeds": len(c),
            "MMD(Q(X), N(0, I))": fmt_mean_se(c.latent_mmd, 4),
            "runs with perm. p ≥ 0.05": (f"{int((c.latent_mmd_p >= 0.05).sum())}/{len(c)}"
                                         if enc else "n/a"),
            "dims rejected, KS vs N(0,1)": fmt_mean_se(c.ks_rejected, 1),
            "dims rejected, Shapiro–Wilk": fmt_mean_se(c.shapiro_rejected, 1),
            "code std, lowest–highest over runs": (
                f"{c.code_std_min.min():.2f}–{c.code_std_max.max():.2f}" if enc else "n/a")})
    out += ["500 codes Q(x) of fresh real points against 500 draws of N(0, I_5): the "
            "IMQ-kernel MMD (the training penalty's estimator) with a 200-permutation "
            "p-value, and per dimension the Kolmogorov–Smirnov test against N(0, 1) and the "
            "Shapiro–Wilk test of normal shape, counted as rejections at 5 % with a "
            "Bonferroni correction over the 5 dimensions (mean over seeds); the code std "
            "column spans the smallest and the largest per-dimension standard deviation of "
            "any run of the cell. n/a: no encoder. The verdict (C4 above) reads the codes "
            "pairwise against calibrated references instead: a deterministic encoder of 2-D "
            "data puts Q(X) on a surface in R^5, which exact-normality tests reject as n "
            "grows.",
            "", markdown_table(pd.DataFrame(rows)), ""]
    for method in methods:
        mixes = ordered(sub[sub.method == method]["mixture"], MIXTURES)
        pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
        fig, axes = plt.subplots(len(mixes), len(pairs), squeeze=False,
                                 figsize=(1.3 * len(pairs), 1.4 * len(mixes)))
        for r, mixture in enumerate(mixes):
            run = first_seed_run(sub, method, mixture)
            a = artifacts(results, run.run_id) if run is not None else None
            for k, (i, j) in enumerate(pairs):
                ax = axes[r, k]
                if a is not None and "codes" in a:
                    codes = a["codes"]
                    ax.scatter(codes[:, i], codes[:, j], s=1, alpha=0.5, lw=0)
                ax.set(xlim=(-4, 4), ylim=(-4, 4), xticks=[], yticks=[])
                ax.set_aspect("equal")
                if r == 0:
                    ax.set_title(f"Q{i + 1} vs Q{j + 1}", fontsize=7)
                if k == 0:
                    ax.set_ylabel(mixture, fontsize=7)
        path = figures / f"convergence_{tag}_latent_{method}.png"
        save_figure(fig, path)
        out += [f"![Latent pairs, {method}]({rel(path, reports)})", "",
                f"{method}: Q(X)_i against Q(X)_j for the 10 pairs (lowest seed; axes ±4, "
                "N(0, 1) has 99.99 % of its mass inside).", ""]
    return out


def quality_section(sub, results, figures, reports, tag) -> list[str]:
    encoders = methods_with(sub, "latent_mmd")
    methods = [m for m in ordered(sub["method"], METHOD_NAMES) if m in encoders]
    alpha = sub.iloc[0].opt_alpha
    rows = []
    for mixture, method, c in cells(sub):
        enc = method in encoders
        rows.append({
            "mixture": mixture, "method": method, "seeds": len(c),
            "mean score, real points": fmt_mean_se(c.quality_inlier, 3),
            "mean score, > 10 std from modes": fmt_mean_se(c.quality_far, 3),
            f"HDR of the error, 1 − α = {1 - alpha:g}": (
                f"[{c.hdr_lo.mean():.3f}, {c.hdr_hi.mean():.3f}]" if enc else "n/a"),
            "HDR coverage of fresh errors, %": fmt_mean_se(100 * c.hdr_coverage, 1),
            "outlier AUROC": fmt_mean_se(c.auroc, 3)})
    out = ["### The quality score exp(−||x − G(Q(x))||) (Section 4, Figure 4)", "",
           "Mean quality score of 2,500 real points and of the map's grid points farther "
           "than 10 std from every mode; the HDR of the reconstruction error e_x (the "
           f"shortest interval holding {100 * (1 - alpha):g} % of 2,500 errors; mean "
           "bounds over seeds) and the share of fresh errors it holds; the **outlier "
           "AUROC**: 1,000 inliers from the mixture against 1,000 points uniform over the "
           "mixture's bounding box, ranked by the score (a uniform point that lands on a "
           "mode is an inlier in all but name, so even a perfect score stays below 1). "
           "n/a: no encoder, hence no score.", "", markdown_table(pd.DataFrame(rows)), ""]
    mixes = ordered(sub["mixture"], MIXTURES)
    if methods and mixes:
        fig, axes = plt.subplots(len(methods), len(mixes), squeeze=False,
                                 figsize=(3.0 * len(mixes), 2.8 * len(methods)))
        for i, method in enumerate(methods):
            for j, mixture in enumerate(mixes):
                ax = axes[i, j]
                mix = get_mixture(mixture, sub.iloc[0].preset)
                run = first_seed_run(sub, method, mixture)
                a = artifacts(results, run.run_id) if run is not None else None
                if a is not None and "map_score" in a:
                    im = ax.pcolormesh(a["map_x"], a["map_y"], a["map_score"], vmin=0, vmax=1,
                                       cmap="viridis", shading="auto")
                    ax.scatter(mix.centres[:, 0], mix.centres[:, 1], s=6, c="red", lw=0)
                    fig.colorbar(im, ax=ax, fraction=0.046)
                ax.set_aspect("equal")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{method} · {mixture}", fontsize=8)
        path = figures / f"convergence_{tag}_quality.png"
        save_figure(fig, path)
        out += [f"![Quality-score maps]({rel(path, reports)})", "",
                "The quality score over the plane (lowest seed); red: the mode centres.", ""]
    return out


def interpolation_section(sub, results, figures, reports, tag) -> list[str]:
    methods, mixes = ordered(sub["method"], METHOD_NAMES), ordered(sub["mixture"], MIXTURES)
    rows = []
    for mixture in mixes:
        for method in methods:
            c = sub[(sub.mixture == mixture) & (sub.method == method)]
            if len(c):
                rows.append({"mixture": mixture, "method": method, "seeds": len(c),
                             "interpolants within 3 std of a mode, %":
                             fmt_mean_se(100 * c.interp_near_mode, 1)})
    fig, axes = plt.subplots(len(methods), len(mixes), squeeze=False,
                             figsize=(2.6 * len(mixes), 2.6 * len(methods)))
    cmap = plt.get_cmap("tab20")
    for i, method in enumerate(methods):
        for j, mixture in enumerate(mixes):
            ax = axes[i, j]
            mix = get_mixture(mixture, sub.iloc[0].preset)
            draw_mixture(ax, mix.centres, mix.std)
            run = first_seed_run(sub, method, mixture)
            a = artifacts(results, run.run_id) if run is not None else None
            if a is not None:
                for p, path in enumerate(a["interpolations"][:6]):
                    color = cmap(p)
                    ax.plot(path[:, 0], path[:, 1], "-", color=color, lw=0.5, alpha=0.6)
                    ax.scatter(path[1:-1, 0], path[1:-1, 1], s=3, color=color, lw=0)
                    ax.scatter(*path[-1], marker="v", s=14, color=color)
                    ax.scatter(*path[0], marker="^", s=14, color=color)
            ax.set_title(f"{method} · {mixture}", fontsize=8)
    path = figures / f"convergence_{tag}_interpolation.png"
    save_figure(fig, path)
    return ["### Interpolations in the latent space (Appendix E, Figure 8)", "",
            "G(λ z1 + (1 − λ) z2) for λ = 0, 0.05, …, 1 and 12 random pairs (z1, z2) per "
            "run; the share of the 21 × 12 points within 3 std of their nearest mode (mean ± "
            "s.e. over seeds). The figure shows 6 pairs of the lowest seed over the 3-std "
            "discs (▼ λ = 0, i.e. z2; ▲ λ = 1, i.e. z1).", "",
            markdown_table(pd.DataFrame(rows)), "",
            f"![Interpolations]({rel(path, reports)})", ""]
