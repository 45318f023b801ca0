"""The run directory is the record; ``results/`` holds one tidy row per finished run.

A run directory holds ``config.json`` and ``manifest.json`` (written before training),
``log.jsonl`` (one line per logged iteration), ``metrics.json``, ``samples.npy`` (the
evaluation samples, so anyone can re-score them) and ``checkpoint.pt``. Every write that
replaces a file goes through :mod:`iwgan.files` (a temporary file and ``os.replace``), so
an interrupted run never leaves a half-written record.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from iwgan.files import atomic_write_text, command_line, locked

SCHEMA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]   # the checkout the suite runs from
PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pot", "pandas", "pytorch-fid")


def read_json(path: Path, fix: str):
    """The JSON record at ``path``; a missing, unreadable or corrupt file is a
    :class:`ResultsError` naming it, with ``fix``."""
    text = read_text(path, "no such file", fix)
    try:
        return json.loads(text)
    except ValueError as err:
        raise ResultsError(f"{path}: not valid JSON ({err}); delete it and {fix}") from None


def read_text(path: Path, missing: str, fix: str) -> str:
    """The text of ``path``; a missing, unreadable or binary file is a
    :class:`ResultsError` naming it: ``missing`` says what is missing, ``fix`` what to do."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise ResultsError(f"{path}: {missing}; {fix}") from None
    except UnicodeDecodeError:
        raise ResultsError(f"{path}: not a text file; delete it and {fix}") from None
    except OSError as err:
        why = {errno.EACCES: "check its permissions (chmod u+r)",
               errno.EPERM: "check its permissions (chmod u+r)",
               errno.EISDIR: "a folder stands where the file should be: move it away"}
        raise ResultsError(f"cannot read {path}: {err.strerror or err}; "
                           f"{why.get(err.errno, 'check the path and retry')}") from None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# Where a copy of the checkout without .git learns its commit (benchmarks/gpu_campaign.py).
SOURCE_COMMIT, SOURCE_DIRTY = "IWGAN_SOURCE_COMMIT", "IWGAN_SOURCE_DIRTY"


def git_state() -> dict:
    root = REPO_ROOT
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "--verify", "-q", "HEAD")
        # The suite's own outputs (committed results and reports) change while a grid
        # runs; only changes to anything else make the code "dirty".
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                         ":!results", ":!reports", ":!runs"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    if not commit and os.environ.get(SOURCE_COMMIT):
        # A copy of the checkout without its .git (a GPU machine the tree was sent to):
        # the commit it was copied from, as recorded where the copy was made.
        commit, dirty = os.environ[SOURCE_COMMIT], os.environ.get(SOURCE_DIRTY) == "1"
    return {"commit": commit or "unknown", "dirty": dirty}


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The CPU as its float results depend on it: vendor, family, model and stepping, and
    a digest of its instruction-set flags (oneDNN and MKL pick kernels by them, so two
    CPUs with the same torch "capability" can still round differently)."""
    try:
        block = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return platform.processor() or platform.machine()
    info = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = hashlib.sha256(info.get("flags", "").encode()).hexdigest()[:8]
    return (f"{info.get('vendor_id', '?')} family {info.get('cpu family', '?')} model "
            f"{info.get('model', '?')} stepping {info.get('stepping', '?')} flags {flags}")


def device_name(device: str) -> str:
    """The GPU's name for a CUDA device, the processor's otherwise."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def manifest(cfg, stacked: list[str] | None = None) -> dict:
    """The record of how a run was made, written before it trains; ``stacked`` names the
    runs trained together with it as one model (iwgan.engine.stacking)."""
    return {
        "config": cfg.to_dict(), "config_hash": cfg.hash(), "seed": cfg.seed,
        "stacked_with": stacked or [cfg.run_id],
        **git_state(), "packages": package_versions(),
        "python": sys.version.split()[0], "platform": platform.platform(),
        # What a seeded CPU run's float results depend on besides the torch build: runs
        # are bit-exact only where these agree (docs/reproducibility.md).
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_model": cpu_model(),
        "device": device_name(cfg.device), "device_string": cfg.device,
        "threads": torch.get_num_threads(),
        "deterministic": {"use_deterministic_algorithms": cfg.deterministic,
                          "cudnn_deterministic": cfg.deterministic,
                          "cudnn_benchmark": not cfg.deterministic},
        "command": command_line(),
        "started": now(),
    }


def manifest_columns(record: dict) -> dict:
    """The manifest, flattened into the results row, so every row is traceable."""
    return {"commit": record["commit"], "dirty": record["dirty"],
            "command": record["command"], "python": record["python"],
            "torch": record["packages"]["torch"], "numpy": record["packages"]["numpy"],
            "scipy": record["packages"]["scipy"], "pot": record["packages"]["pot"],
            "platform": record["platform"], "cpu_capability": record["cpu_capability"],
            "cpu_model": record["cpu_model"], "device": record["device"],
            "threads": record["threads"],
            "deterministic": record["deterministic"]["use_deterministic_algorithms"],
            "started": record["started"]}


def check_run_dirs(root: Path, configs) -> None:
    """Refuse, before anything runs, a run directory (or the folder of them) that is a
    file: every run of the grid would fail on it."""
    root = Path(root)
    for path in (*reversed(root.parents), root, *(root / c.run_id for c in configs)):
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} is a file where the run directory should be a folder: "
                             "move it away (or choose another --out)")


# results/<experiment>.csv: one row per run; these columns identify the run.
KEY_COLUMNS = ["run_id", "method", "mixture", "preset", "seed", "profile"]
STATUSES = ("finished", "stopped_early", "diverged", "failed")
TRAINED = ("finished", "stopped_early")      # the statuses of runs that have metrics


@dataclass(frozen=True)
class TableSpec:
    """What a results table's rows hold: ``numeric`` columns hold numbers (or nothing),
    ``flags`` True, False (or nothing), and a trained row (finished or stopped early)
    has a number in every one of ``metrics``. Columns not named are not checked."""

    numeric: tuple = ()
    flags: tuple = ()
    metrics: tuple = ()


COMMON_NUMERIC = ("schema_version", "seed", "iterations", "width", "batch_size", "lr",
                  "n_critic", "threads", "stacked", "diverged_at", "iterations_run",
                  "train_seconds", "eval_seconds", "ema", "plateau_evaluations",
                  "iteration", "value")     # the last two: the curves tables'

COMMON_FLAGS = ("dirty", "deterministic", "converged")
# By the table's file name (results/<name>.csv); any other table gets the common checks.
TABLES = {
    "mode_coverage": TableSpec(
        numeric=("modes", "hq_pct", "kl", "w1", "recon_error", "latent_mmd", "curve_seconds",
                 "plateau_w1_change", "plateau_w1_allowed", "plateau_hq_change",
                 "plateau_hq_allowed"),
        metrics=("modes", "hq_pct", "w1")),
    "convergence": TableSpec(
        numeric=("evaluations", "w1_threshold", "it_all_modes_hq", "it_w1_below",
                 "curve_w1_final", "dual_gap_final", "spearman_dual_gap", "final_modes",
                 "final_hq_pct", "final_kl", "final_w1", "final_recon_error",
                 "final_latent_mmd", "latent_mmd", "latent_mmd_p", "auroc", "hdr_coverage",
                 "quality_inlier", "plateau_w1_change", "plateau_w1_allowed",
                 "plateau_hq_change", "plateau_hq_allowed"),
        metrics=("final_modes", "final_hq_pct", "final_w1", "curve_w1_final")),
    "images": TableSpec(
        numeric=("fd", "fd_samples", "recon_error", "latent_mmd", "quality_mean",
                 "fd_real_validation", "seconds_per_iteration", "resumed_from",
                 "plateau_fd_change", "plateau_fd_allowed", "plateau_recon_change",
                 "plateau_recon_allowed"),
        flags=("channels_last_used",),
        metrics=("fd",)),
}
# the tuned protocol's search (iwgan.experiments.tuning): mode-coverage rows and their
# candidate
TABLES["search"] = dataclasses.replace(
    TABLES["mode_coverage"], numeric=(*TABLES["mode_coverage"].numeric, "candidate"))
DAMAGED = ("raise", "warn", "drop")


class ResultsError(ValueError):
    pass


@dataclass(frozen=True)
class Damage:
    """A results row that cannot be trusted: its line in the file, run id and why."""

    line: int
    run_id: str
    reason: str
    text: str        # the line(s) as they are in the file

    def describe(self, path: Path) -> str:
        return f"{path} line {self.line} (run {self.run_id or '?'}): {self.reason}"


def _records(text: str):
    """(first line, last line) of every CSV record of ``text`` (lines numbered from 1; a
    quoted field may span lines), its number of fields, and a function giving record k's
    fields."""
    if '"' not in text:    # nothing quoted: a line is a record (the curves tables)
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return ([(k, k) for k in range(1, len(lines) + 1)],
                [line.count(",") + 1 if line else 0 for line in lines],
                lambda k: lines[k].split(","))
    reader = csv.reader(io.StringIO(text, newline="\n"))
    spans, fields, last = [], [], 0
    for record in reader:
        spans.append((last + 1, reader.line_num))
        fields.append(record)
        last = reader.line_num
    return spans, [len(f) for f in fields], fields.__getitem__


def _row_problems(df: pd.DataFrame, spec: TableSpec) -> dict[int, str]:
    """{row position: why it is damaged} of a table read by pandas (only columns pandas
    could not read as numbers are looked at value by value)."""
    bad: dict[int, str] = {}

    def mark(mask, why) -> None:
        for k in np.flatnonzero(np.asarray(mask, dtype=bool)):
            bad.setdefault(int(k), why(int(k)))

    if "run_id" in df:
        mark(df["run_id"].isna(), lambda k: "no run id")
    if "status" in df:
        mark(~df["status"].isin(STATUSES), lambda k: f"status {str(df['status'].iloc[k])!r}"
             f" is none of {', '.join(STATUSES)}")
    for column in (c for c in (*COMMON_NUMERIC, *spec.numeric) if c in df):
        values = df[column]
        if not pd.api.types.is_numeric_dtype(values):
            mark(values.notna() & pd.to_numeric(values, errors="coerce").isna(),
                 lambda k, c=column: f"{c} {str(df[c].iloc[k])!r} is not a number")
    if "seed" in df:
        seed = pd.to_numeric(df["seed"], errors="coerce")
        mark(seed.notna() & (seed % 1 != 0),
             lambda k: f"seed {str(df['seed'].iloc[k])!r} is not an integer")
    for column in (c for c in (*COMMON_FLAGS, *spec.flags) if c in df):
        values = df[column]
        if not pd.api.types.is_bool_dtype(values):
            mark(values.notna() & ~values.isin([True, False, "True", "False"]),
                 lambda k, c=column: f"{c} {str(df[c].iloc[k])!r} is neither True nor False")
    if "status" in df:
        trained = df["status"].isin(TRAINED)
        # W1 is left empty, with the reason in w1_unavailable, where POT was missing
        no_w1 = (df["w1_unavailable"].notna() if "w1_unavailable" in df
                 else pd.Series(False, index=df.index))
        for column in (c for c in spec.metrics if c in df):
            excused = no_w1 if "w1" in column else False
            mark(trained & ~excused & pd.to_numeric(df[column], errors="coerce").isna(),
                 lambda k, c=column: f"a {df['status'].iloc[k]} row without its {c}")
    return bad


def parse_results(path: Path, text: str) -> tuple[pd.DataFrame, list[Damage], list[int]]:
    """The table in ``text`` without its damaged rows, those (a line cut short: the file
    ends in it, or it has fewer or more fields than the header; a value of the wrong
    type, an unknown status, a trained row without its metrics), and the line of each
    row kept. An intact table reads exactly as ``pd.read_csv`` reads it."""
    try:
        spans, counts, fields = _records(text)
    except csv.Error as err:   # e.g. a quoted field the file ends in
        raise ResultsError(f"{path}: not a well-formed CSV table ({err}); restore it from "
                           "a backup or re-run the experiment") from None
    lines = text.split("\n")

    def raw(span) -> str:
        return "\n".join(lines[span[0] - 1:span[1]]) + "\n"

    header = fields(0)
    width = len(header)
    spec = TABLES.get(Path(path).name.removesuffix(".csv"), TableSpec())

    def damage(k: int, reason: str) -> Damage:
        values = dict(zip(header, fields(k)))
        return Damage(spans[k][0], values.get("run_id", ""), reason, raw(spans[k]))

    cut = [len(spans) - 1] if len(spans) > 1 and not text.endswith("\n") else []
    damaged = [damage(k, "the file ends in the middle of this row (cut short)") for k in cut]
    damaged += [damage(k, f"{counts[k]} fields where the header has {width} (a cut or "
                       "mangled line)") for k in range(1, len(spans))
                if counts[k] and counts[k] != width and k not in cut]
    skip = {d.line for d in damaged}
    kept = [spans[k] for k in range(1, len(spans)) if counts[k] and spans[k][0] not in skip]

    def frame(rows) -> pd.DataFrame:
        return pd.read_csv(io.StringIO(raw(spans[0]) + "".join(map(raw, rows))))

    df = frame(kept) if damaged else pd.read_csv(io.StringIO(text))
    if len(df) != len(kept):   # pandas parsed another number of rows: a malformed file
        raise ResultsError(f"{path}: not a well-formed CSV table ({len(df)} rows parsed, "
                           f"{len(kept)} lines); restore it from a backup or re-run the "
                           "experiment")
    bad = _row_problems(df, spec)
    if bad:
        damaged += [Damage(kept[k][0], str(df["run_id"].iloc[k]) if "run_id" in df else "",
                           reason, raw(kept[k])) for k, reason in bad.items()]
        kept = [span for k, span in enumerate(kept) if k not in bad]
        df = frame(kept)
    return df, sorted(damaged, key=lambda d: d.line), [first for first, _ in kept]


def read_results(path: Path, required=(), keys=KEY_COLUMNS,
                 run_first="run the experiment first (e.g. `nox -s mode_coverage`)",
                 damaged: str = "raise") -> pd.DataFrame:
    """Read a results table (:func:`check_results`). ``damaged`` says what a damaged row
    does: ``raise`` (one line naming the file and the rows: a report is never built on
    them), ``warn`` (one line each on stderr, left out) or ``drop`` (left out silently).
    A left-out row is not finished, so a resumed grid runs it again."""
    df, damage = check_results(path, required, keys, run_first)
    if damage and damaged == "raise":
        shown = "; ".join(d.describe(path).removeprefix(f"{path} ") for d in damage[:3])
        more = f"; and {len(damage) - 3} more" if len(damage) > 3 else ""
        raise ResultsError(f"{path}: {len(damage)} damaged row(s): {shown}{more}; re-run "
                           "them with the grid's --resume (it replaces them), or delete "
                           "those lines")
    if damage and damaged == "warn":
        for d in damage:
            print(f"warning: {d.describe(path)}; left out (a --resume of its grid runs it "
                  "again)", file=sys.stderr)
    return df


def check_results(path: Path, required=(), keys=KEY_COLUMNS,
                  run_first="run the experiment first (e.g. `nox -s mode_coverage`)"
                  ) -> tuple[pd.DataFrame, list[Damage]]:
    """A results table without its damaged rows, and those (:func:`parse_results`);
    a file of another schema, with missing columns or with two rows of one run id is a
    :class:`ResultsError`."""
    path = Path(path)
    text = read_text(path, "no results file", run_first)
    if not text.strip():
        raise ResultsError(f"{path}: empty file (no header, no rows); delete it and "
                           f"{run_first}")
    df, damage, lines = parse_results(path, text)
    df = with_protocol(df)
    missing = [c for c in ["schema_version", *keys, *required] if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: missing column(s) {missing}; the file is from an older "
                           "or foreign schema, or was edited: re-run the experiment to "
                           "regenerate it")
    if df.empty and not damage:
        raise ResultsError(f"{path}: a header and no rows; delete it and {run_first}")
    versions = set(df["schema_version"].unique())
    if versions - {SCHEMA_VERSION}:
        raise ResultsError(f"{path}: schema version(s) {sorted(versions)}, this suite reads "
                           f"version {SCHEMA_VERSION}; re-run the experiment to regenerate it")
    twice = df["run_id"][df["run_id"].duplicated(keep=False)]
    if len(twice):
        run = twice.iloc[0]
        where = [lines[k] for k in np.flatnonzero(df["run_id"] == run)]
        raise ResultsError(f"{path}: run {run} has {len(where)} rows (lines "
                           f"{', '.join(map(str, where))}; {twice.nunique()} run id(s) "
                           "repeated): a table holds one row per run, delete all but the "
                           f"right one (each run's own record is runs/<run>/metrics.json)")
    return df, damage


def with_protocol(df: pd.DataFrame) -> pd.DataFrame:
    """A mixture table's ``protocol`` column (iwgan.engine.config.PROTOCOLS), its rows
    written before the column existed read as ``identical``, the only protocol there was
    (their run ids and hashes are those of identical runs)."""
    if "mixture" not in df.columns:
        return df
    if "protocol" not in df.columns:
        return df.assign(protocol="identical")
    return df.assign(protocol=df["protocol"].fillna("identical"))


def upsert_results(path: Path, rows: list[dict], keys=KEY_COLUMNS,
                   order=("profile", "preset", "mixture", "method", "seed")) -> pd.DataFrame:
    """Add ``rows`` to the table, replacing earlier rows of the same run_id; atomic, and
    under the file's lock, so that concurrent writers (two grids into one ``--out``) both
    keep their rows. Damaged rows of the table (:func:`parse_results`) are moved to
    ``<table>.damaged``, with a warning naming them."""
    path = Path(path)
    new = pd.DataFrame([{"schema_version": SCHEMA_VERSION, **r} for r in rows])
    with locked(path):
        if path.exists():
            old, damage = check_results(path, keys=keys)
            set_aside(path, damage)
            new = pd.concat([old[~old["run_id"].isin(new["run_id"])], new], ignore_index=True)
        new = new.sort_values(list(order), kind="stable")
        atomic_write_text(path, new.to_csv(index=False))
    return new


def set_aside(path: Path, damage: list[Damage]) -> None:
    """Append the damaged rows to ``<path>.damaged`` (they leave the table: a damaged row
    is never averaged), saying so on stderr."""
    if not damage:
        return
    aside = path.with_name(path.name + ".damaged")
    with open(aside, "a") as f:
        for d in damage:
            f.write(d.text if d.text.endswith("\n") else d.text + "\n")
    for d in damage:
        print(f"warning: {d.describe(path)}: moved to {aside}", file=sys.stderr)


# results/<experiment>_curves.csv: one line per (run, evaluation, metric).
CURVE_KEYS = ("run_id", "method", "mixture", "preset", "seed", "profile")


def curve_frame(records: list[dict], row: dict, metrics) -> pd.DataFrame:
    """A run's evaluation records in long format: one line per (evaluation, metric)."""
    if not records:
        return pd.DataFrame(columns=[*CURVE_KEYS, "iteration", "train_seconds", "metric", "value"])
    wide = pd.DataFrame(records)
    long = wide.melt(id_vars=["iteration", "train_seconds"],
                     value_vars=[c for c in metrics if c in wide], var_name="metric")
    for k in reversed(CURVE_KEYS):
        long.insert(0, k, row[k])
    return long


def read_curves(path: Path) -> pd.DataFrame:
    """A curves table (long format), its lines checked as a results table's are
    (:func:`parse_results`); a damaged line is a :class:`ResultsError` naming it."""
    path = Path(path)
    df, damage, _ = parse_results(path, read_text(path, "no curves file", "run its grid"))
    if damage:
        raise ResultsError(f"{damage[0].describe(path)} ({len(damage)} damaged line(s)); "
                           "re-run its grid with --resume, or delete those lines")
    return df


def upsert_curves(path: Path, curves: list[pd.DataFrame]) -> None:
    """Add the runs' curves, replacing earlier curves of the same run_id; atomic, under
    the file's lock (damaged lines are moved to ``<table>.damaged``)."""
    new = pd.concat(curves, ignore_index=True)
    path = Path(path)
    with locked(path):
        if path.exists():
            old, damage, _ = parse_results(path, read_text(path, "no curves file", ""))
            set_aside(path, damage)
            new = pd.concat([old[~old.run_id.isin(set(new.run_id))], new], ignore_index=True)
        new = new.sort_values(["profile", "preset", "mixture", "method", "seed", "metric",
                               "iteration"], kind="stable")
        atomic_write_text(path, new.to_csv(index=False))


# results/images.csv: one row per image run.
IMAGE_KEY_COLUMNS = ["run_id", "method", "dataset", "seed", "profile"]


def read_image_results(path: Path, required=(), damaged: str = "raise") -> pd.DataFrame:
    """Read results/images.csv, refusing files of another schema or with missing columns
    (:func:`read_results`)."""
    return read_results(path, required, keys=IMAGE_KEY_COLUMNS, run_first="run an image "
                        "experiment first (e.g. `nox -s replicate_digits`)", damaged=damaged)
