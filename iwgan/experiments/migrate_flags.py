"""Fill in the run flags of mixture rows recorded before the runs recorded them:
``collapsed``, ``mode_lost`` and ``degraded_late`` (iwgan.metrics.verdicts.run_flags,
stated in docs/verdicts.md), from each row's modes and HQ % at the end of training and
its curve in the results folder, by the very function a run calls:

    python -m iwgan migrate-flags            # rewrite results/ in place
    python -m iwgan migrate-flags --check    # exit 1 if a trained row lacks a flag

Each table is rewritten atomically under its lock (a grid may be writing to it); a flag
already recorded is kept, so running it twice changes nothing the second time. A row
whose run has no curve gets ``collapsed`` only (the others stay empty: not known).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from iwgan.data.mixtures import get_mixture
from iwgan.engine.records import TRAINED, read_curves
from iwgan.experiments.common import add_migration_arguments, results_folder
from iwgan.files import atomic_write_text, locked
from iwgan.metrics.verdicts import FLAG_COLUMNS, curve_table, run_flags

# table under results/ -> (its curves, the columns of its final modes and HQ %)
TABLES = {"mode_coverage.csv": ("mode_coverage_curves.csv", "modes", "hq_pct"),
          "convergence.csv": ("convergence_curves.csv", "final_modes", "final_hq_pct"),
          "tuning/search.csv": ("tuning/search_curves.csv", "modes", "hq_pct")}


def lacking(df: pd.DataFrame) -> pd.Series:
    """The trained rows without flags (a run records all three at once; ``collapsed`` is
    known for every trained run, the others only where it has a curve)."""
    trained = df.status.isin(TRAINED)
    if any(c not in df for c in FLAG_COLUMNS):
        return trained
    return trained & df["collapsed"].isna()


def filled(df: pd.DataFrame, curves: pd.DataFrame, modes: str, hq: str) -> pd.DataFrame:
    """``df`` with each missing flag of its trained rows computed (recorded flags kept)."""
    out = df.copy()
    for column in FLAG_COLUMNS:
        if column not in out:
            out[column] = np.nan
        out[column] = out[column].astype(object)
    todo = lacking(out)
    mine = curves[curves.run_id.isin(set(out.run_id[todo]))] if len(curves) else curves
    by_run = dict(tuple(curve_table(mine).groupby("run_id"))) if len(mine) else {}
    for i in out.index[todo]:
        row = out.loc[i]
        k = get_mixture(row.mixture, row.preset).n_modes
        flags = run_flags(by_run.get(row.run_id, pd.DataFrame()), float(row[modes]),
                          float(row[hq]), k)
        for column, value in flags.items():
            if pd.isna(out.at[i, column]):
                out.at[i, column] = value
    return out


def tables(results: Path):
    for name, (curves, modes, hq) in TABLES.items():
        if (results / name).exists():
            yield results / name, results / curves, modes, hq


def migrate(path: Path, curves_path: Path, modes: str, hq: str) -> int:
    """Fill ``path``'s missing flags in place; the number of rows changed."""
    with locked(path):
        df = read_curves(path)   # as written; a damaged line is refused
        if not lacking(df).any():
            return 0
        curves = read_curves(curves_path) if curves_path.exists() else pd.DataFrame()
        out = filled(df, curves, modes, hq)
        changed = int((out[list(FLAG_COLUMNS)].notna().sum(axis=1)
                       != df.reindex(columns=FLAG_COLUMNS).notna().sum(axis=1)).sum())
        if changed:
            atomic_write_text(path, out.to_csv(index=False))
        return changed


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_migration_arguments(p, "a trained row lacks a flag")


def command(args) -> int:
    results = results_folder(args)
    if args.check:
        missing = {p: int(lacking(read_curves(p)).sum()) for p, *_ in tables(results)}
        missing = {p: n for p, n in missing.items() if n}
        for path, n in missing.items():
            print(f"{path}: {n} trained row(s) lack a flag")
        print(f"{len(missing)} table(s) lack flags"
              + ("; run `python -m iwgan migrate-flags`" if missing else ""))
        return 1 if missing else 0
    for path, curves, modes, hq in tables(results):
        print(f"{path}: {migrate(path, curves, modes, hq)} row(s) given their flags")
    return 0
