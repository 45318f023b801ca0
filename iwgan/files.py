"""Files written whole or not at all, at the bottom of the suite: every write that replaces
a file goes through a temporary file and ``os.replace``, so that a reader (or an
interruption) never sees half a file; a read-modify-write holds the file's lock, so that
two processes writing one file at once both keep their changes."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch


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


def append_jsonl(path: Path, record: dict) -> None:
    """``record`` as one more line of the JSON-lines file at ``path`` (a log: appended,
    not replaced)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def save_with(path: Path, write) -> None:
    """What ``write(buffer)`` writes, as the file at ``path``, atomically."""
    buf = io.BytesIO()
    write(buf)
    atomic_write_bytes(path, buf.getvalue())


def save_npy(path: Path, array: np.ndarray) -> None:
    save_with(path, lambda f: np.save(f, array))


def save_npz(path: Path, arrays: dict) -> None:
    """Arrays as one compressed .npz, atomically."""
    save_with(path, lambda f: np.savez_compressed(f, **arrays))


def save_torch(path: Path, obj) -> None:
    save_with(path, lambda f: torch.save(obj, f))
