"""The run directory is the record; ``results/`` holds one tidy row per finished run.

A run directory holds ``config.json`` and ``manifest.json`` (written before training),
``log.jsonl`` (one line per logged iteration), ``metrics.json``, ``samples.npy`` (the
evaluation samples, so anyone can re-score them) and ``checkpoint.pt``. Every write that
replaces a file goes through a temporary file and ``os.replace``, so an interrupted run
never leaves a half-written record.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

SCHEMA_VERSION = 1
PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pot", "pandas", "pytorch-fid")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def save_torch(path: Path, obj) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_state() -> dict:
    root = Path(__file__).resolve().parent.parent
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


def manifest(cfg) -> dict:
    import torch

    return {
        "config": cfg.to_dict(), "config_hash": cfg.hash(), "seed": cfg.seed,
        **git_state(), "packages": package_versions(),
        "python": sys.version.split()[0], "platform": platform.platform(),
        "device": torch.cuda.get_device_name() if cfg.device.startswith("cuda")
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "deterministic": {"use_deterministic_algorithms": cfg.deterministic,
                          "cudnn_deterministic": cfg.deterministic,
                          "cudnn_benchmark": not cfg.deterministic},
        "command": command_line(),
        "started": now(),
    }


class RunDir:
    def __init__(self, root: Path, cfg):
        self.path = Path(root) / cfg.run_id
        self.path.mkdir(parents=True, exist_ok=True)
        self.log_path = self.path / "log.jsonl"
        self.log_path.unlink(missing_ok=True)

    def log(self, record: dict) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def write(self, name: str, obj) -> None:
        write_json(self.path / name, obj)


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
    df = pd.read_csv(path)
    missing = [c for c in ["schema_version", *keys, *required] if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: missing column(s) {missing}; the file is from an older "
                           "or foreign schema, re-run the experiment to regenerate it")
    versions = set(df["schema_version"].unique())
    if versions != {SCHEMA_VERSION}:
        raise ResultsError(f"{path}: schema version(s) {sorted(versions)}, this suite reads "
                           f"version {SCHEMA_VERSION}; re-run the experiment to regenerate it")
    return df


def upsert_results(path: Path, rows: list[dict], keys=KEY_COLUMNS,
                   order=("profile", "preset", "mixture", "method", "seed")) -> pd.DataFrame:
    """Add ``rows`` to the table, replacing earlier rows of the same run_id; atomic."""
    path = Path(path)
    new = pd.DataFrame([{"schema_version": SCHEMA_VERSION, **r} for r in rows])
    if path.exists():
        old = read_results(path, keys=keys)
        new = pd.concat([old[~old["run_id"].isin(new["run_id"])], new], ignore_index=True)
    new = new.sort_values(list(order), kind="stable")
    atomic_write_text(path, new.to_csv(index=False))
    return new
