"""Helpers every report uses: deterministic figures, Markdown tables, mean ± s.e."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from iwgan.records import atomic_write_bytes, atomic_write_text  # noqa: E402

# Fixed style and no timestamps or version strings in the files, so that rebuilding a
# report from the same results gives byte-identical PNGs and Markdown.
plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "font.size": 9,
                     "svg.hashsalt": "iwgan-bench", "path.simplify": False})
PNG_METADATA = {"Software": None}


def save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=PNG_METADATA, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_report(path: Path, text: str) -> Path:
    atomic_write_text(path, text.rstrip() + "\n")
    return path


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


def markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def rel(path: Path, start: Path) -> str:
    return Path(path).resolve().relative_to(Path(start).resolve()).as_posix()


def batching_note(df: pd.DataFrame) -> list[str]:
    """How the runs were trained: one by one, or K seeds of a cell as one batched model
    (iwgan.batched; the ``batch_seeds`` column, absent or 1 for a sequential run)."""
    k = (df["batch_seeds"] if "batch_seeds" in df else pd.Series(1, index=df.index))
    k = k.fillna(1).astype(int)
    parts = [f"{int((k == 1).sum())} runs trained one seed at a time"] if (k == 1).any() else []
    parts += [f"{int((k == kk).sum())} runs as members of batches of K = {kk} seeds"
              for kk in sorted(set(k[k > 1]))]
    text = "- Training: " + "; ".join(parts) + "."
    if (k > 1).any():
        text += (" A batched member is its sequential run up to float rounding "
                 "(`iwgan.batched`, equal to 1e-9 in float64 in `tests/test_batched.py`); "
                 "its seconds are its share of the batch's (/ K).")
    return [text]
