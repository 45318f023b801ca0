"""Helpers every report uses: deterministic figures, Markdown tables, mean ± s.e."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from iwgan.core.methods import METHOD_NAMES, get_method  # noqa: E402
from iwgan.data.mixtures import MIXTURES  # noqa: E402
from iwgan.engine.config import LATER_FIELDS, make_config  # noqa: E402
from iwgan.files import atomic_write_text, save_with  # noqa: E402
from iwgan.metrics.mixture import N_STD  # noqa: E402

# Fixed style and no timestamps or version strings in the files, so that rebuilding a
# report from the same results gives byte-identical PNGs and Markdown.
plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "font.size": 9,
                     "svg.hashsalt": "iwgan-bench", "path.simplify": False})
PNG_METADATA = {"Software": None}


def save_figure(fig, path: Path) -> None:
    save_with(path, lambda f: fig.savefig(f, format="png", metadata=PNG_METADATA,
                                          bbox_inches="tight"))
    plt.close(fig)


def write_report(path: Path, text: str) -> Path:
    atomic_write_text(path, text.rstrip() + "\n")
    return path


# The three axes a comparison over training can use, by the column that holds each.
AXES = {"iterations": "iterations", "updates": "generator updates",
        "seconds": "training seconds"}


@functools.cache
def updates_per_iteration(method: str, n_critic: int) -> int:
    """Generator updates per outer iteration of ``method`` with ``n_critic`` critic steps:
    from the method's own phases (``Method.generator_updates``; iWGAN n_critic, a baseline
    that steps G once an iteration 1)."""
    cfg = make_config("quick", method=method, n_critic=int(n_critic))
    return get_method(method).generator_updates(cfg)


def updates_text(runs: pd.DataFrame) -> str:
    """"iwgan 5, wgan_gp 1": each method's generator updates per iteration in ``runs``."""
    return ", ".join(
        f"{m} " + "/".join(str(u) for u in sorted({updates_per_iteration(m, int(n))
                                                   for n in g.n_critic}))
        for m, g in runs.groupby("method", sort=False))


def on_three_axes(curves: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``curves`` (run_id, iteration, train_seconds, ...) of ``runs`` with the column
    ``updates`` (the iteration times its run's generator updates per iteration) and
    ``seconds`` (the training seconds its curve recorded at that iteration; where a curve
    recorded none, the iteration times its row's training seconds per iteration, and
    ``seconds_derived`` says so)."""
    per_it = {r.run_id: updates_per_iteration(r.method, r.n_critic)
              for r in runs.itertuples()}
    c = curves[curves.run_id.isin(set(per_it))].copy()
    c["updates"] = c.iteration * c.run_id.map(per_it)
    recorded = (c.train_seconds.astype(float) if "train_seconds" in c
                else pd.Series(np.nan, index=c.index))
    rate = (runs.set_index("run_id").train_seconds / runs.set_index("run_id").iterations
            if {"train_seconds", "iterations"} <= set(runs) else pd.Series(dtype=float))
    c["seconds_derived"] = recorded.isna()
    c["seconds"] = recorded.where(~c.seconds_derived, c.iteration * c.run_id.map(rate))
    return c


def seconds_note(curves: pd.DataFrame) -> str:
    """Said in a caption when some curves had no seconds of their own."""
    if "seconds_derived" not in curves or not curves.seconds_derived.any():
        return ""
    runs = curves[curves.seconds_derived].run_id.nunique()
    return (f" {runs} run(s) recorded no seconds in their curve: their seconds axis is the "
            "iteration × the row's training seconds per iteration (a constant rate, "
            "derived).")


def mean_curves(curves: pd.DataFrame, axis: str) -> pd.DataFrame:
    """Per method and iteration, the mean over seeds of ``axis`` (iterations, generator
    updates or training seconds) and of the value, with the value's standard error: seeds
    share their evaluation iterations, not their seconds, so every axis is averaged at the
    same evaluations."""
    x = "iteration" if axis == "iterations" else axis
    g = curves.groupby(["method", "iteration"], sort=True)
    out = g.agg(x=(x, "mean"), y=("value", "mean"), sd=("value", "std"),
                n=("value", "size")).reset_index()
    out["se"] = (out.sd / np.sqrt(out.n)).fillna(0.0)
    return out


def plot_on_axis(ax, curves: pd.DataFrame, axis: str, methods, palette) -> None:
    """Mean over seeds (band: ± s.e.) of each method's curve against ``axis``."""
    means = mean_curves(curves, axis)
    for i, method in enumerate(methods):
        m = means[means.method == method]
        if m.empty:
            continue
        ax.plot(m.x, m.y, color=palette(i), lw=1.2, label=method)
        ax.fill_between(m.x, m.y - m.se, m.y + m.se, color=palette(i), alpha=0.2, lw=0)


TRAINED = ("finished", "stopped_early")   # statuses of runs that have numbers
PROFILE_ORDER = ["converged", "paper", "quick", "long", "tiny"]   # mixture profiles


def trained(df: pd.DataFrame) -> pd.DataFrame:
    """The runs that trained to the end (not diverged, not failed)."""
    return df[df.status.isin(TRAINED)]


FLAG_TEXT = {"True": True, "1.0": True, "1": True, "False": False, "0.0": False, "0": False}


def flag_values(column: pd.Series) -> pd.Series:
    """A yes/no column of a results table (``converged``, ``collapsed``, ...) as True,
    False or NaN (not known), however the CSV stored it (True, "True", 1.0)."""
    return column.astype(str).map(FLAG_TEXT)


def ran_continuation(df: pd.DataFrame) -> bool:
    """Whether any of ``df``'s runs ran the continuation check (``--continue-check``)."""
    return "continued_iterations" in df and bool(df.continued_iterations.notna().any())


def identical(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the identical protocol (the paper's comparison), on which the claims'
    verdicts and the cross-profile comparisons are stated: a tuned run is never averaged
    with them (iwgan.engine.config.PROTOCOLS)."""
    return df[df.protocol == "identical"] if "protocol" in df else df


def ordered(values, order):
    """The distinct ``values`` in ``order`` first, then any others sorted."""
    return [v for v in order if v in set(values)] + sorted(set(values) - set(order))


# What the rows recorded before a setting had its column were run with: a field's neutral
# value (iwgan.engine.config.LATER_FIELDS), and the mode-coverage curve's W1 sample count,
# 500 before its rows recorded it.
UNRECORDED = {**LATER_FIELDS, "curve_w1_samples": 500}


def setting(rows: pd.DataFrame, column: str) -> pd.Series:
    """Each row's value of a setting it records, :data:`UNRECORDED`'s for the rows
    recorded before it had its column."""
    none = UNRECORDED[column]
    return rows[column].fillna(none) if column in rows else pd.Series(none, index=rows.index)


def settings_text(rows: pd.DataFrame, column: str, joint: str = ", ") -> str:
    """The distinct values of a recorded setting, as text ("16", or "16, 32")."""
    return joint.join(f"{v:g}" for v in sorted(set(setting(rows, column))))


def reference_profile(df) -> str:
    """The mixture profile the literature comparison and the verdicts read: converged if
    run."""
    return "converged" if "converged" in set(df.profile) else ordered(df.profile,
                                                                        PROFILE_ORDER)[0]


def moving_average(sub: pd.DataFrame) -> pd.Series:
    """Each row's decay of the moving average of G and Q (cfg.ema)."""
    return setting(sub, "ema")


def methods_with(rows: pd.DataFrame, column: str) -> set[str]:
    """The methods some of whose rows have a value in ``column``: those with an encoder,
    for a column only an encoder gives (a report reads it from the rows, not from the
    method, which need not be installed where the report is built)."""
    return set(rows.method[rows[column].notna()]) if column in rows else set()


def recipe_text(sub: pd.DataFrame) -> str:
    """The training recipe of ``sub``'s runs as a phrase: critic steps, learning rate and
    its schedule, and the moving average of G and Q where one was used."""
    def values(column, fmt="{}"):
        return ", ".join(fmt.format(v) for v in sorted(set(sub[column])))
    ema = sorted(set(moving_average(sub)))
    average = ("no moving average" if ema == [0.0] else "moving average of G and Q, "
               "decay " + ", ".join("none" if e == 0 else f"{e:g}" for e in ema))
    return (f"n_critic {values('n_critic')}, lr {values('lr', '{:g}')} "
            f"({values('lr_schedule')}), {average}")


def cells(sub: pd.DataFrame):
    """(mixture, method, rows) of every non-empty cell, mixtures then methods in the
    paper's order."""
    for mixture in ordered(sub["mixture"], MIXTURES):
        for method in ordered(sub["method"], METHOD_NAMES):
            cell = sub[(sub.mixture == mixture) & (sub.method == method)]
            if not cell.empty:
                yield mixture, method, cell


def mean_se(values) -> tuple[float, float, int]:
    """Mean and standard error (sample std / sqrt(n)) over the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se, len(v)


def fmt_mean_se(values, digits: int = 2, na: str = "n/a") -> str:
    mean, se, n = mean_se(values)
    if n == 0:
        return na
    if math.isnan(se):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def draw_mixture(ax, centres, std: float, grey: str = "0.8") -> None:
    """A mixture's modes as their 3-std discs, framed with a margin, no ticks."""
    centres = np.asarray(centres)
    for c in centres:
        ax.add_patch(plt.Circle(c, N_STD * std, color=grey, lw=0))
    pad = 4 * std + 0.15 * np.ptp(centres, axis=0).max()
    ax.set_xlim(centres[:, 0].min() - pad, centres[:, 0].max() + pad)
    ax.set_ylim(centres[:, 1].min() - pad, centres[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def rel(path: Path, start: Path) -> str:
    return Path(path).resolve().relative_to(Path(start).resolve()).as_posix()


def stacking_note(df: pd.DataFrame) -> list[str]:
    """How the runs were trained: one at a time, or K runs as one stacked model
    (iwgan.engine.stacking; the ``stacked`` column, 1 for a single run)."""
    k = df["stacked"].fillna(1).astype(int)
    parts = [f"{int((k == 1).sum())} runs trained one at a time"] if (k == 1).any() else []
    parts += [f"{int((k == kk).sum())} runs as members of stacked models of K = {kk} runs"
              for kk in sorted(set(k[k > 1]))]
    text = "- Training: " + "; ".join(parts) + "."
    if (k > 1).any():
        text += (" A stacked member is its single run up to float rounding "
                 "(`iwgan.engine.stacking`, equal to 1e-9 in float64 in "
                 "`tests/engine/test_stacking.py`); its seconds are its share of the "
                 "stack's (/ K).")
    return [text]


def provenance_section(df: pd.DataFrame, profiles: bool = False) -> list[str]:
    """The commands and commits behind ``df``'s rows (with their profiles if asked), and
    how the runs were trained."""
    out = ["## Provenance", "", "The commands and commits that produced these results:", ""]
    for (command, commit, dirty), g in df.groupby(["command", "commit", "dirty"], sort=True):
        flag = " (uncommitted changes)" if str(dirty) == "True" else ""
        which = f" ({', '.join(sorted(set(g.profile)))})" if profiles else ""
        out.append(f"- `{command}` at commit `{str(commit)[:10]}`{flag}: {len(g)} runs{which}")
    return out + stacking_note(df) + [""]


def wall_time_section(results: Path, experiment: str) -> list[str]:
    """The last grid run's wall time per profile, from
    ``results/benchmarks/<experiment>_wall_time.json`` (iwgan.experiments.skeleton.finish)."""
    path = Path(results) / "benchmarks" / f"{experiment}_wall_time.json"
    if not path.exists():
        return []
    wall = [{"profile": k, "runs": v["runs"], "wall time (min)": f"{v['wall_seconds']/60:.1f}",
             "parallel jobs": v["jobs"], "CPUs": v["cpu_count"],
             "load avg (1/5/15 min) at end": " / ".join(
                 map(str, v.get("load_average_at_end", ["not recorded"]))),
             "methods": " ".join(v["methods"]), "presets": " ".join(v["presets"])}
            for k, v in sorted(json.loads(path.read_text()).items())]
    return ["Wall time of the last grid run per profile "
            f"(`results/benchmarks/{experiment}_wall_time.json`):", "",
            markdown_table(pd.DataFrame(wall)), ""]
