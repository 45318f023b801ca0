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
import sys
import tempfile
import time
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


LOCK_PATIENCE = 2.0   # seconds a writer waits for a lock before it says what it waits for


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive lock on ``path`` (through ``<path>.lock``) for a read-modify-write,
    so that two processes writing one results file at once both keep their rows. A lock
    held longer than :data:`LOCK_PATIENCE` gets one line on stderr naming the lock file
    and the process holding it (its pid and command, written in the file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        deadline = time.monotonic() + LOCK_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
                print(f"waiting for the lock {lock}, held by {holder or 'another process'}: "
                      "it is released when that process finishes writing or ends",
                      file=sys.stderr, flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
                break
        try:
            me = f"pid {os.getpid()} ({command_line()})\n".encode()
            os.pwrite(fd, me, 0)
            os.ftruncate(fd, len(me))
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def command_line() -> str:
    """How this process was started, as a user would type it."""
    prog = Path(sys.argv[0])
    name = (f"python -m {prog.parent.name}" if prog.name == "__main__.py" else prog.name)
    return " ".join([name, *sys.argv[1:]])


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
