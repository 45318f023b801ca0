"""The run directory is the record; ``results/`` holds one tidy row per finished run.

A run directory holds ``config.json`` and ``manifest.json`` (written before training),
``log.jsonl`` (one line per logged iteration), ``metrics.json``, ``samples.npy`` (the
evaluation samples, so anyone can re-score them) and ``checkpoint.pt``. Every write that
replaces a file goes through :mod:`iwgan.files` (a temporary file and ``os.replace``), so
an interrupted run never leaves a half-written record.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch

from iwgan.files import atomic_write_text, locked

SCHEMA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]   # the checkout the suite runs from
PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pot", "pandas", "pytorch-fid")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    return {"commit": commit or "unknown", "dirty": dirty}


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def command_line() -> str:
    """How this process was started, as a user would type it."""
    prog = Path(sys.argv[0])
    name = (f"python -m {prog.parent.name}" if prog.name == "__main__.py" else prog.name)
    return " ".join([name, *sys.argv[1:]])


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


# results/<experiment>.csv: one row per run; these columns identify the run.
KEY_COLUMNS = ["run_id", "method", "mixture", "preset", "seed", "profile"]


class ResultsError(ValueError):
    pass


def read_results(path: Path, required=(), keys=KEY_COLUMNS,
                 run_first="run the experiment first (e.g. `nox -s mode_coverage`)"
                 ) -> pd.DataFrame:
    """Read a results table, refusing files of another schema or with missing columns."""
    path = Path(path)
    if not path.exists():
        raise ResultsError(f"{path}: no results file; {run_first}")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ResultsError(f"{path}: empty file (no header, no rows); delete it and "
                           f"{run_first}") from None
    missing = [c for c in ["schema_version", *keys, *required] if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: missing column(s) {missing}; the file is from an older "
                           "or foreign schema, re-run the experiment to regenerate it")
    if df.empty:
        raise ResultsError(f"{path}: a header and no rows; delete it and {run_first}")
    versions = set(df["schema_version"].unique())
    if versions != {SCHEMA_VERSION}:
        raise ResultsError(f"{path}: schema version(s) {sorted(versions)}, this suite reads "
                           f"version {SCHEMA_VERSION}; re-run the experiment to regenerate it")
    return df


def upsert_results(path: Path, rows: list[dict], keys=KEY_COLUMNS,
                   order=("profile", "preset", "mixture", "method", "seed")) -> pd.DataFrame:
    """Add ``rows`` to the table, replacing earlier rows of the same run_id; atomic, and
    under the file's lock, so that concurrent writers (two grids into one ``--out``) both
    keep their rows."""
    path = Path(path)
    new = pd.DataFrame([{"schema_version": SCHEMA_VERSION, **r} for r in rows])
    with locked(path):
        if path.exists():
            old = read_results(path, keys=keys)
            new = pd.concat([old[~old["run_id"].isin(new["run_id"])], new], ignore_index=True)
        new = new.sort_values(list(order), kind="stable")
        atomic_write_text(path, new.to_csv(index=False))
    return new


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


def upsert_curves(path: Path, curves: list[pd.DataFrame]) -> None:
    """Add the runs' curves, replacing earlier curves of the same run_id; atomic, under
    the file's lock."""
    new = pd.concat(curves, ignore_index=True)
    path = Path(path)
    with locked(path):
        if path.exists():
            old = pd.read_csv(path)
            new = pd.concat([old[~old.run_id.isin(set(new.run_id))], new], ignore_index=True)
        new = new.sort_values(["profile", "preset", "mixture", "method", "seed", "metric",
                               "iteration"], kind="stable")
        atomic_write_text(path, new.to_csv(index=False))


# results/images.csv: one row per image run.
IMAGE_KEY_COLUMNS = ["run_id", "method", "dataset", "seed", "profile"]


def read_image_results(path: Path, required=()) -> pd.DataFrame:
    """Read results/images.csv, refusing files of another schema or with missing columns."""
    return read_results(path, required, keys=IMAGE_KEY_COLUMNS, run_first="run an image "
                        "experiment first (e.g. `nox -s replicate_digits`)")
