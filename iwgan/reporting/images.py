"""reports/digits.md, reports/mnist.md, reports/celeba.md, rebuilt from results/ alone:
``results/images.csv`` (one row per run) and ``results/images/<run_id>.npz`` (the arrays
every figure is drawn from: sample grids, reconstructions, interpolations, codes,
reconstruction errors, best and worst validation images by quality score). A dataset or
method that was not run gets a cell that says why, never a blank."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from iwgan.core.methods import METHOD_NAMES
from iwgan.data.datasets import image_grid
from iwgan.engine.config import ImageConfig, cell_id
from iwgan.engine.records import read_image_results
from iwgan.metrics.plateau import assessable, image_limits, settled
from iwgan.reporting.common import (
    fmt_mean_se,
    markdown_table,
    methods_with,
    ordered,
    rel,
    save_figure,
    settings_text,
    write_report,
)
from iwgan.reporting.mode_coverage import converged_count

DATASET_TITLES = {"digits": "Digits (scikit-learn's 8x8 digits at 28x28; offline stand-in "
                            "for MNIST)",
                  "mnist": "MNIST (Section 5.2, Appendix F)",
                  "celeba": "CelebA 64x64 (Section 5.2, Appendix G)"}
SESSIONS = {"digits": "nox -s replicate_digits", "mnist": "nox -s replicate_mnist",
            "celeba": "nox -s replicate_celeba -- --data-dir <celeba root>"}
NOT_RUN = {"digits": "not run: `nox -s replicate_digits` (CPU, offline)",
           "mnist": "not run: `nox -s replicate_mnist` (CPU profile; MNIST comes from the "
                    "package index) or, for the paper profile, on a GPU",
           "celeba": "not run: needs a GPU and CelebA (`nox -s replicate_celeba`)"}
# The paper's numbers (Appendix G.2); it reports no FID on MNIST and none for ALI/alpha-GAN.
PAPER_FID = {"celeba": {"iwgan": "69.28", "wgan_gp": "94.49"}}
PAPER_FIGURES = {
    "digits": dict(samples="MNIST Fig. 10", recon="Figs 5b, 13", interp="Figs 5c, 11",
                   latent="Fig. 9", hist="Fig. 12", quality="Fig. 14"),
    "mnist": dict(samples="Figs 5a, 10", recon="Figs 5b, 13", interp="Figs 5c, 11",
                  latent="Fig. 9", hist="Fig. 12", quality="Fig. 14"),
    "celeba": dict(samples="Figs 16, 17", recon="Figs 6b, 20", interp="Figs 6c, 18",
                   latent="Fig. 15", hist="Fig. 19", quality="Figs 7, 21"),
}
PROFILE_ORDER = ["paper", "cpu", "smoke"]
# Sections whose report shows the plateau rule on the first part of each curve: how the
# MNIST cpu profile's iterations were chosen (docs/images.md).
PLATEAU_BY_BUDGET = {("mnist", "cpu")}
BUDGET_FRACTIONS = (1 / 2, 2 / 3, 5 / 6, 1)
# The settings a section's heading names when a profile's runs come in several budgets
# (ema: the moving average of G and Q, recorded by rows since it exists).
BUDGET = ("iterations", "batch_size", "lr", "n_critic", "width", "ema")


def build_reports(results: Path, reports: Path) -> list[Path]:
    """One report per dataset; those without runs say how to produce them."""
    results, reports = Path(results), Path(reports)
    df = read_image_results(results / "images.csv", required=["status", "fd", "fd_name"])
    return [build_report(df, results, reports, dataset) for dataset in DATASET_TITLES]


def paper_cell(dataset: str, method: str) -> str:
    if dataset in PAPER_FID:
        return PAPER_FID[dataset].get(method, "not reported by the paper")
    if dataset == "digits":
        return "n/a (the paper has no digits experiment)"
    return "not reported (the paper gives no FID on MNIST)"


def build_report(df, results: Path, reports: Path, dataset: str) -> Path:
    sub = df[df.dataset == dataset]
    out = [f"# {DATASET_TITLES[dataset]}", "",
           "Rebuilt by `nox -s reports` from `results/images.csv` and `results/images/*.npz` "
           "alone; do not edit.", ""]
    if sub.empty:
        out += ["## FID", "", markdown_table(_table_frame(
            [{"method": m, "paper FID": paper_cell(dataset, m), "this suite": NOT_RUN[dataset]}
             for m in METHOD_NAMES])), "",
                f"No run of this dataset is recorded. To produce this report: "
                f"`{SESSIONS[dataset]}` (see docs/images.md)."]
        return write_report(reports / f"{dataset}.md", "\n".join(out))
    for profile in ordered(sub["profile"], PROFILE_ORDER):
        runs = sub[sub.profile == profile]
        for label, budget in budgets(runs):
            out += profile_section(budget, results, reports, dataset, profile, label)
    return write_report(reports / f"{dataset}.md", "\n".join(out))


def overrides_of(row) -> str:
    """What follows the cell in a run id: "" for the profile's own settings, else the
    hash of the settings it overrides (iwgan.engine.config.TrainConfig.run_id)."""
    base = cell_id(row["profile"], row["dataset"], row["method"], int(row["seed"]))
    return str(row["run_id"])[len(base):].lstrip("-")


def budgets(runs) -> list[tuple[str, pd.DataFrame]]:
    """A profile's runs split by their settings, so that no table averages over two
    budgets: the profile's own settings first (label ""), then each set of overridden
    settings, labelled by the budget fields in which it differs from the profile's."""
    keys = runs.apply(overrides_of, axis=1)
    groups = [(key, runs[keys == key]) for key in sorted(set(keys), key=lambda k: (k != "", k))]
    profile = ImageConfig.make(runs["profile"].iloc[0], dataset=runs["dataset"].iloc[0])
    out = []
    for key, group in groups:
        run = group.iloc[0]
        differ = [f"{field.replace('_', ' ')} {run[field]:,}" if field == "iterations"
                  else f"{field.replace('_', ' ')} {run[field]:g}"
                  for field in BUDGET if field in run and pd.notna(run[field])
                  and run[field] != getattr(profile, field)]
        out.append((key, "" if not key else ", ".join(differ) or f"settings {key}", group))
    # Rows recorded before a setting had its column cannot name it: two budgets that read
    # alike are told apart by their settings' hash (their commands say what it holds).
    labels = [label for _, label, _ in out]
    return [(label if labels.count(label) == 1 or not key else f"{label} (settings {key})",
             group) for key, label, group in out]


def _table_frame(rows):
    return pd.DataFrame(rows)


def _fmt(values, digits=2, na="n/a"):
    return fmt_mean_se([float(v) for v in values], digits=digits, na=na)


def profile_section(sub, results, reports, dataset, profile, label="") -> list[str]:
    first = sub.iloc[0]
    name = str(first["fd_name"])
    is_fid = name == "FID"
    out = [f"## {profile} profile" + (f", {label}" if label else ""), "",
           f"**Data**: {first['train_images']} training images; {first['preprocessing']}"
           + source_text(first) + ". "
           f"**Networks**: Appendix {'D3' if first['arch'] == 'celeba' else 'D2'} "
           f"(`{first['arch']}`) at width x{first['width']:g}, z_dim {first['z_dim']}. "
           f"**Budget**: {first['iterations']} iterations, batch {first['batch_size']}, "
           f"Adam lr {first['lr']:g}, {first['n_critic']} critic steps per iteration "
           "(iwgan, wgan_gp; the GAN, ALI, BiGAN and alpha-GAN step 1:1)"
           + (f", moving average of G and Q with decay {first['ema']:g}"
              if pd.notna(first.get("ema")) and first["ema"] else "") + ".", "",
           f"**Metric: {name}**, {first['fd_samples']} generated samples against "
           f"{first['fd_reference_samples']} real {reference_split(first)} images. "
           + ("pytorch-fid's Inception (pool3, 2048 features)." if is_fid else
              f"{name} is the Fréchet distance on the 128 penultimate features of a small "
              f"CNN classifier trained on this dataset's train split "
              f"({first.get('fd_note', '')}): comparable between the rows of this table only, "
              "**not a FID** and not comparable with the paper's numbers.")
           + (f" Real vs real (validation split against the same reference): "
              f"{float(first['fd_real_validation']):.3f}, the floor beside every distance "
              "below." if _finite(first.get("fd_real_validation")) else ""), ""]
    warnings = sorted({str(w) for w in sub.get("fd_warning", []) if isinstance(w, str) and w})
    if warnings:
        out += [f"Warning: {w}." for w in warnings] + [""]
    rows = []
    for method in ordered(set(METHOD_NAMES) | set(sub.method), METHOD_NAMES):
        runs = sub[sub.method == method]
        done = runs[runs.status == "finished"]
        row = {"method": method, "paper FID": paper_cell(dataset, method),
               f"this suite ({name})": "", "real vs real": floor_cell(runs)}
        if runs.empty:
            row[f"this suite ({name})"] = (
                f"not run at this budget: `python -m iwgan images --dataset {dataset} --profile "
                f"{profile} --methods {method}` with these settings" if label else
                f"not run in this profile: `{SESSIONS[dataset]}`")
            row["recon error"] = "n/a"
            row["Q(x) std"] = "n/a"
            row["seeds"] = 0
            row["converged"] = "n/a"
        else:
            row[f"this suite ({name})"] = (_fmt(done["fd"], 3) if len(done) else
                                           f"diverged ({', '.join(runs.status)})")
            row["recon error"] = (_fmt(done["recon_error"], 3, na="n/a (no encoder)")
                                             if len(done) else "n/a")
            row["Q(x) std"] = (_fmt(done["latent_std"], 3, na="n/a (no encoder)")
                               if len(done) and "latent_std" in done else "n/a")
            row["seeds"] = len(done)
            row["converged"] = (converged_count(runs) if "converged" in runs
                                and len(done) else "n/a")
        rows.append(row)
    out += [markdown_table(_table_frame(rows)), "",
            "Cells: mean ± standard error over seeds (one seed: the value). recon error is "
            "the mean of ||x − G(Q(x))|| (L2, pixels in [0, 1]) over the validation split. "
            "Q(x) std is the standard deviation of the codes Q(x) over the validation split, "
            "averaged over the latent dimensions: about 1 for codes distributed as the prior "
            "N(0, I), 0 for an encoder that maps every image to one code (a collapsed "
            "encoder, whose G(Q(x)) is one image). "
            f"*Converged*: runs whose {settings_text(sub, 'curve_points', ' or ')}-point "
            "curve (the Fréchet distance on 1,000 samples "
            "and the reconstruction error of 200 validation images) stopped moving over the "
            "last quarter of training: each within 10 % of its level (the distance also "
            "within the real-vs-real floor), by `iwgan.metrics.plateau.settled`; n/a: no "
            "curve (FID on a CPU, or a run made before curves were recorded).", ""]
    if (dataset, profile) in PLATEAU_BY_BUDGET:
        out += plateau_by_budget(sub, results)
    stem = f"images_{dataset}_{profile}" + ("_" + overrides_of(first) if label else "")
    out += figure_section(sub, results, reports, dataset, stem)
    out += runtime_section(sub)
    commands = sorted(set(sub["command"].astype(str)))
    out += ["### Commands", "", "```", *commands, "```", ""]
    return out


def plateau_by_budget(sub, results) -> list[str]:
    """The plateau rule on the first T' iterations of each method's first finished seed:
    at which budget a shorter run would have stopped moving. At a constant rate the first
    T' iterations of a run are a T'-iteration run (nothing depends on the total); only
    the points of its curve differ."""
    arrays = load_arrays(results, sub)
    first = sub.iloc[0]
    total = int(first["iterations"])
    budgets = [max(1, round(total * f)) for f in BUDGET_FRACTIONS]
    floor = float(first["fd_real_validation"]) if _finite(
        first.get("fd_real_validation")) else None
    encoders = methods_with(sub, "recon_error")   # read from the rows: no error, no Q
    rows = []
    for method, a in arrays.items():
        if "curve_iteration" not in a:
            continue
        curve = [{"iteration": int(i), "fd": float(f), "recon_error": float(r)} for i, f, r in
                 zip(a["curve_iteration"], a["curve_fd"], a["curve_recon_error"])]
        row = {"method": method}
        for budget in budgets:
            prefix = [r for r in curve if r["iteration"] <= budget]
            if not assessable(prefix, budget):
                row[f"{budget:,}"] = "n/a (too few points)"
                continue
            verdict = settled(prefix, budget,
                              image_limits(method in encoders, floor))
            row[f"{budget:,}"] = (f"{'yes' if verdict['converged'] else 'no'} "
                                  f"(FD {prefix[-1]['fd']:.1f}, "
                                  f"Δ {round(verdict['plateau_fd_change'], 1) + 0.0:+.1f} of "
                                  f"±{verdict['plateau_fd_allowed']:.1f})")
        rows.append(row)
    if not rows:
        return []
    return ["### Plateau by budget", "",
            "The convergence rule applied to the first T' iterations of each method's first "
            "seed (its curve up to T'): *yes* where a T'-iteration run would have been "
            "called converged. Each cell: the verdict, the curve's last distance (1,000 "
            "samples: above the table's 10k-sample distances) and the fitted change of the "
            "distance over the last quarter of T' against its allowance (10 % of its level "
            "plus the real-vs-real floor; methods with an encoder must also hold their "
            "reconstruction error within 10 %).", "",
            markdown_table(_table_frame(rows)), ""]


def source_text(row) -> str:
    """Where the images came from and the hash of that file, where the row records them."""
    source, digest = row.get("data_source"), row.get("data_sha256")
    if not isinstance(source, str) or not source:
        return ""
    return f"; source {source}" + (f", sha256 {digest}" if isinstance(digest, str) and digest
                                   else "")


def reference_split(row) -> str:
    split = row.get("fd_reference_split")
    return "training" if not isinstance(split, str) or split == "train" else split


def floor_cell(runs) -> str:
    """The real-vs-real distance of the runs' reference (one value per section)."""
    floors = sorted({round(float(v), 3) for v in runs.get("fd_real_validation", [])
                     if _finite(v)})
    return " / ".join(f"{v:.3f}" for v in floors) or "n/a"


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def load_arrays(results: Path, sub) -> dict:
    """The first finished seed's arrays of each method, in method order."""
    arrays = {}
    for method in ordered(sub.method, METHOD_NAMES):
        runs = sub[(sub.method == method) & (sub.status == "finished")].sort_values("seed")
        for run_id in runs["run_id"]:
            path = Path(results) / "images" / f"{run_id}.npz"
            if path.exists():
                with np.load(path) as f:
                    arrays[method] = {k: f[k] for k in f.files}
                break
    return arrays


def _show(ax, images, nrow, title=None):
    grid = image_grid(np.asarray(images), nrow)
    if grid.shape[-1] == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def figure_section(sub, results, reports, dataset, stem) -> list[str]:
    arrays = load_arrays(results, sub)
    if not arrays:
        return ["No finished run has figure arrays in results/images/.", ""]
    figs = reports / "figures"
    refs = PAPER_FIGURES[dataset]
    seed_note = "first finished seed of each method"
    out = ["### Figures", ""]
    encoders = {m: a for m, a in arrays.items() if "codes" in a}

    fig, axes = plt.subplots(1, len(arrays), figsize=(3 * len(arrays), 3.2), squeeze=False)
    for ax, (method, a) in zip(axes[0], arrays.items()):
        _show(ax, a["samples"], 8, method)
    path = figs / f"{stem}_samples.png"
    save_figure(fig, path)
    out += [f"**Generated samples** G(z), z ~ N(0, I), side by side ({refs['samples']}; "
            f"{seed_note}):", "", f"![samples]({rel(path, reports)})", ""]

    if encoders:
        fig, axes = plt.subplots(1, len(encoders), figsize=(3 * len(encoders), 1.9),
                                 squeeze=False)
        for ax, (method, a) in zip(axes[0], encoders.items()):
            pairs = np.stack([a["recon_real"], a["recon"]], axis=1).reshape(
                -1, *a["recon"].shape[1:])
            _show(ax, pairs[:32], 8, method)
        path = figs / f"{stem}_reconstructions.png"
        save_figure(fig, path)
        out += [f"**Reconstructions** ({refs['recon']}): validation images x (odd columns) "
                "next to G(Q(x)) (even columns):", "", f"![reconstructions]({rel(path, reports)})",
                ""]

    fig, axes = plt.subplots(len(arrays), 1, figsize=(6, 2.6 * len(arrays)), squeeze=False)
    for ax, (method, a) in zip(axes[:, 0], arrays.items()):
        interp = a["interp"]
        if "interp_ends" in a:  # the real x1 and x2 framing their path
            ends = a["interp_ends"]
            interp = np.concatenate([ends[:, :1], interp, ends[:, 1:]], axis=1)
        _show(ax, interp.reshape(-1, *interp.shape[2:]), interp.shape[1],
              f"{method}: {a['interp_kind']}")
    path = figs / f"{stem}_interpolations.png"
    save_figure(fig, path)
    out += [f"**Interpolations** ({refs['interp']}): G((1 − t) z1 + t z2), t = 0 … 1 in 10 "
            "steps; z1, z2 = Q(x1), Q(x2) for pairs of validation images (the methods with an "
            "encoder; the real x1 and x2 in the first and last columns), random prior pairs "
            "for WGAN-GP:", "",
            f"![interpolations]({rel(path, reports)})", ""]

    if encoders:
        for method, a in encoders.items():
            path = figs / f"{stem}_latent_{method}.png"
            latent_pairs(a["codes"], method, path)
            out += [f"**Latent space of {method}** ({refs['latent']}): Q(x)_i against "
                    f"Q(x)_j on up to 1,000 validation images, first "
                    f"{min(8, a['codes'].shape[1])} dimensions (diagonal: histograms):", "",
                    f"![latent {method}]({rel(path, reports)})", ""]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        top = max(float(a["recon_errors"].max()) for a in encoders.values())
        errors = pd.DataFrame([{"method": method, "error": float(e)}
                               for method, a in encoders.items() for e in a["recon_errors"]])
        sns.histplot(data=errors, x="error", hue="method", hue_order=list(encoders),
                     bins=np.linspace(0, top * 1.02 if top > 0 else 1, 40), element="step",
                     fill=False, linewidth=1.5, ax=ax)
        ax.set_xlabel("||x − G(Q(x))|| on the validation split")
        ax.set_ylabel("images")
        path = figs / f"{stem}_recon_hist.png"
        save_figure(fig, path)
        out += [f"**Reconstruction errors** ({refs['hist']}):", "",
                f"![reconstruction errors]({rel(path, reports)})", ""]

        fig, axes = plt.subplots(len(encoders), 2, figsize=(8, 1.6 * len(encoders) + 0.6),
                                 squeeze=False)
        for row, (method, a) in zip(axes, encoders.items()):
            _show(row[0], a["best"], 8, f"{method}: highest (≥ {a['best_scores'].min():.3g})")
            _show(row[1], a["worst"], 8, f"{method}: lowest (≤ {a['worst_scores'].max():.3g})")
        path = figs / f"{stem}_quality.png"
        save_figure(fig, path)
        out += [f"**Best and worst validation images by quality score** exp(−||x − G(Q(x))||) "
                f"({refs['quality']}):", "", f"![quality]({rel(path, reports)})", ""]
    return out


def latent_pairs(codes: np.ndarray, method: str, path: Path) -> None:
    """A pair plot of the first (up to) 8 latent dimensions: histograms on the diagonal."""
    d = min(8, codes.shape[1])
    frame = pd.DataFrame(codes[:, :d], columns=[f"z{i}" for i in range(d)])
    grid = sns.pairplot(frame, height=1.1, corner=False, diag_kws={"bins": 30},
                        plot_kws={"s": 2, "alpha": 0.5, "linewidth": 0})
    for ax in grid.axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    grid.figure.suptitle(f"{method}: Q(x)_i vs Q(x)_j", y=1.01)
    save_figure(grid.figure, path)


def runtime_section(sub) -> list[str]:
    rows = []
    for _, r in sub.sort_values(["method", "seed"]).iterrows():
        rows.append({"run": r["run_id"], "status": r["status"],
                     "iterations": r.get("iterations_run", ""),
                     "train s": _num(r.get("train_seconds")),
                     "s / iteration": _num(r.get("seconds_per_iteration"), 3),
                     "eval s": _num(r.get("eval_seconds")),
                     "device": r.get("device", ""), "precision": r.get("precision_used", ""),
                     "threads": r.get("threads", "")})
    return ["### Runtime", "", markdown_table(_table_frame(rows)), ""]


def _num(value, digits=1) -> str:
    return f"{float(value):.{digits}f}" if _finite(value) else "n/a"
