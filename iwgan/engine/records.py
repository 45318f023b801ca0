"""The run directory is the record; ``results/`` holds one tidy row per finished run.

A run directory holds ``config.json`` and ``manifest.json`` (written before training),
``log.jsonl`` (one line per logged iteration), ``metrics.json``, ``samples.npy`` (the
evaluation samples, so anyone can re-score them) and ``checkpoint.pt``. Every write that
replaces a file goes through a temporary file and ``os.replace``, so an interrupted run
never leaves a half-written record.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
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
import torch

SCHEMA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]   # the checkout the suite runs from
PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pot", "pandas", "pytorch-fid")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Files are written as the user's umask says (mkstemp would leave them 0600).
FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``, so that a
    reader (or an interruption) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive lock on ``path`` (through ``<path>.lock``) for a read-modify-write,
    so that two processes writing one results file at once both keep their rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_json(path: Path, update) -> dict:
    """``update(record)`` on the JSON record at ``path`` (empty if absent), under its lock,
    written back atomically; returns the new record."""
    path = Path(path)
    with locked(path):
        record = json.loads(path.read_text()) if path.exists() else {}
        update(record)
        write_json(path, record)
    return record


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def save_npz(path: Path, arrays: dict) -> None:
    """Arrays as one compressed .npz, atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def save_torch(path: Path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


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


def upsert_image_results(path: Path, rows: list[dict]) -> pd.DataFrame:
    """Add ``rows``, replacing earlier rows of the same run_id; atomic."""
    return upsert_results(path, rows, keys=IMAGE_KEY_COLUMNS,
                          order=("dataset", "profile", "method", "seed"))


def finished_image_runs(path: Path) -> set[tuple[str, str]]:
    if not Path(path).exists():
        return set()
    df = read_image_results(path)
    done = df[df["status"] == "finished"]
    return set(zip(done["run_id"], done["config_hash"]))
