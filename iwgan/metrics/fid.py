"""Fréchet distances between image sets: FID and, offline, FD on a small classifier.

The Fréchet distance between Gaussians fitted to two feature sets,

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)),

is computed in closed form (:func:`frechet_distance`). Two feature networks, two names
that never mix in a table:

    "FID"            pytorch-fid's InceptionV3 (the TF FID weights, pool3, 2048 features);
                     images in [0, 1], grayscale repeated to 3 channels, resized to 299.
    "FD-<data>CNN"   the penultimate layer (128 features) of a small CNN classifier trained
                     once on the dataset's train split (FD-digitsCNN, FD-MNISTCNN), its
                     accuracy measured on a held-out split (MNIST: the 10k test set),
                     cached under a hash of everything that makes it: usable offline,
                     comparable only with itself, never called FID.

Reference statistics of real images are cached under a key that hashes the feature
network (weights included), the dataset and split, its preprocessing and pixels, and the
sample count, and written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from iwgan.data.datasets import ImageData, default_cache_dir
from iwgan.files import atomic_write_bytes

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                 + INCEPTION_FILE)
INCEPTION_DIMS = (64, 192, 768, 2048)  # pytorch-fid's output blocks; 2048 is the FID
METRICS = ("fid", "fd-cnn")


class FIDError(ValueError):
    """A metric that cannot be computed as asked; the message says how to fix it."""


# --- the closed form --------------------------------------------------------------------

def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, float64) of features (N, D)."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    The square root is scipy.linalg.sqrtm (without the ``disp`` argument that pytorch-fid
    passes, deprecated in scipy 1.17 and removed in 1.18). A near-singular product (fewer
    samples than dimensions) can give a non-finite root: then eps * I is added to both
    covariances, as pytorch-fid does. Round-off gives the root a tiny imaginary part;
    its real part is used.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # Dead ReLU features make covariances singular; scipy warns, the root stays
        # finite, and a non-finite one is handled below.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(covmean.imag).max()
        if imag > 1e-3 * max(1.0, np.abs(covmean.real).max()):
            warnings.warn(f"sqrtm of the covariance product has an imaginary part of "
                          f"{imag:.3g}; the Fréchet distance uses the real part", stacklevel=2)
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


# --- feature networks -------------------------------------------------------------------

@dataclass
class FeatureExtractor:
    name: str          # the metric's name in every table: "FID" or "FD-digitsCNN"
    key: dict          # everything that identifies these features (cache keys)
    dims: int
    model: nn.Module
    device: str = "cpu"
    note: str = ""     # e.g. the classifier's validation accuracy

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> np.ndarray:
        """Features (N, dims) of images in [0, 1], shape (N, C, H, W)."""
        x = images.to(self.device, torch.float32)
        out = self.model(x)
        if isinstance(out, list):  # pytorch-fid returns one map per output block
            out = out[0]
        if out.dim() == 4 and out.shape[-2:] != (1, 1):
            out = F.adaptive_avg_pool2d(out, (1, 1))
        return out.flatten(1).double().cpu().numpy()


class _Inception(nn.Module):
    """pytorch-fid's InceptionV3 on 1- or 3-channel images in [0, 1]."""

    def __init__(self, inception):
        super().__init__()
        self.inception = inception

    def forward(self, x):
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.inception(x)


def default_inception_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def resolve_inception_weights(weights: Path | None = None) -> Path:
    """The Inception weights file: ``weights`` if given, else the torch hub cache's,
    downloaded there on first use where there is internet."""
    if weights is not None:
        weights = Path(weights)
        if not weights.is_file():
            raise FIDError(f"--inception-weights {weights}: no such file. It should be "
                           f"{INCEPTION_FILE} from {INCEPTION_URL}")
        return weights
    path = default_inception_path()
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        torch.hub.download_url_to_file(INCEPTION_URL, str(tmp), progress=True)
        tmp.replace(path)
    except Exception as err:  # offline: URLError; behind a proxy: HTTPError, OSError
        raise FIDError(
            f"FID needs the Inception weights {INCEPTION_FILE}, which are not at {path} and "
            f"could not be downloaded ({type(err).__name__}: {err}). On a machine with "
            f"internet download {INCEPTION_URL} and put it at {path} (that is "
            "$TORCH_HOME/hub/checkpoints/), or pass --inception-weights FILE; offline, "
            "digits and MNIST can use --metric fd-cnn instead.") from err
    return path


_SHA_CACHE: dict = {}


def file_sha256(path: Path) -> str:
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()[:16]
    return _SHA_CACHE[key]


@contextlib.contextmanager
def _patched(module, name, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def _unloaded_fid_inception_v3(inc):
    """pytorch-fid's fid_inception_v3 without its weight download (tests only)."""
    model = inc._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    model.Mixed_5b = inc.FIDInceptionA(192, pool_features=32)
    model.Mixed_5c = inc.FIDInceptionA(256, pool_features=64)
    model.Mixed_5d = inc.FIDInceptionA(288, pool_features=64)
    model.Mixed_6b = inc.FIDInceptionC(768, channels_7x7=128)
    model.Mixed_6c = inc.FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6d = inc.FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6e = inc.FIDInceptionC(768, channels_7x7=192)
    model.Mixed_7b = inc.FIDInceptionE_1(1280)
    model.Mixed_7c = inc.FIDInceptionE_2(2048)
    return model


def inception_extractor(weights: Path | None = None, dims: int = 2048, device: str = "cpu",
                        random_init_seed: int | None = None) -> FeatureExtractor:
    """FID's feature network. ``random_init_seed`` builds it without weights and
    re-initialises its convolutions (He normal) so that features are not ~0: for tests
    of the pipeline only, never a FID."""
    # Imported here: pytorch-fid pulls in torchvision, seconds to import, for FID only.
    from iwgan.data._torchvision import import_pytorch_fid_inception

    if dims not in INCEPTION_DIMS:
        raise FIDError(f"Inception features have {INCEPTION_DIMS} dimensions, not {dims}")
    inc = import_pytorch_fid_inception()
    block = inc.InceptionV3.BLOCK_INDEX_BY_DIM[dims]
    if random_init_seed is not None:
        with torch.random.fork_rng(devices=[]), \
                _patched(inc, "fid_inception_v3", lambda: _unloaded_fid_inception_v3(inc)):
            torch.manual_seed(random_init_seed)
            model = inc.InceptionV3([block])
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        key = {"net": "inception-random-init", "seed": random_init_seed, "dims": dims}
        name = "FD-randomInception"
    else:
        path = resolve_inception_weights(weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            with _patched(inc, "load_state_dict_from_url", lambda *a, **k: state):
                model = inc.InceptionV3([block])
        except Exception as err:  # truncated, corrupt, or another network's weights
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise FIDError(f"{path}: not a readable Inception weights file "
                           f"({type(err).__name__}: {first[:200]}); delete it and place "
                           f"{INCEPTION_FILE} from {INCEPTION_URL} there again") from err
        key = {"net": "pytorch-fid-inception-v3", "weights_sha256": file_sha256(path),
               "dims": dims}
        name = "FID" if dims == 2048 else f"FID-{dims}d"
    model = _Inception(model).eval().to(device)
    return FeatureExtractor(name=name, key=key, dims=dims, model=model, device=device)


class SmallCNN(nn.Module):
    """The FD-<data>CNN classifier: two conv blocks, a 128-unit feature layer, a head."""

    FEATURES = 128

    def __init__(self, channels: int, side: int, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * (side // 4) ** 2, self.FEATURES), nn.ReLU())
        self.head = nn.Linear(self.FEATURES, classes)

    def forward(self, x):
        return self.head(self.features(x))


# 400 steps of 64 (18 epochs of the 1,437 training digits): ~0.97-0.99 validation accuracy,
# under a minute on one CPU thread. MNIST's recipe adds a linear decay of the rate to 0
# (CLASSIFIER_RECIPES) and its profiles train longer (config classifier_steps).
CNN_RECIPE = {"arch": "SmallCNN-v1", "steps": 400, "batch": 64, "lr": 1e-3, "seed": 0}
CLASSIFIER_RECIPES = {"mnist": {"schedule": "linear"}}
# How a dataset is named in its metric's name: FD-digitsCNN, FD-MNISTCNN.
METRIC_DATA_NAMES = {"mnist": "MNIST"}


def classifier_name(dataset: str) -> str:
    return f"FD-{METRIC_DATA_NAMES.get(dataset, dataset)}CNN"


def classifier_extractor(train: ImageData, heldout: ImageData, cache_dir: Path | None = None,
                         device: str = "cpu", recipe: dict | None = None) -> FeatureExtractor:
    """FD-<data>CNN's feature network: trained once on ``train`` (cached), its accuracy on
    ``heldout`` (a split it never saw: digits' validation, MNIST's test set) in ``note``."""
    recipe = {**CNN_RECIPE, **CLASSIFIER_RECIPES.get(train.name, {}), **(recipe or {})}
    if train.labels is None:
        raise FIDError(f"--metric fd-cnn needs class labels to train its classifier; "
                       f"{train.name} has none: use --metric fid")
    key = {"net": f"{recipe['arch']}", "recipe": recipe, "train": train.describe()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cache_dir or default_cache_dir()) / "feature_nets" / f"{train.name}cnn-{digest}.pt"
    model = SmallCNN(train.shape[0], train.shape[-1])
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state"])
    else:
        model = train_classifier(train, recipe)
        buf = io.BytesIO()
        torch.save({"state": model.state_dict(), "key": key}, buf)
        atomic_write_bytes(path, buf.getvalue())
    model.eval()
    accuracy = classifier_accuracy(model, heldout)
    key[f"{heldout.split}_accuracy"] = round(accuracy, 4)
    return FeatureExtractor(name=classifier_name(train.name), key=key,
                            dims=SmallCNN.FEATURES, model=_Features(model).eval().to(device),
                            device=device,
                            note=f"classifier {heldout.split} accuracy {accuracy:.3f}")


def train_classifier(train: ImageData, recipe: dict) -> SmallCNN:
    """Adam on batches drawn with replacement, from the recipe's seed; the rate constant
    or (schedule "linear") decayed to 0 at the last step."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe["seed"])
        model = SmallCNN(train.shape[0], train.shape[-1])
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
        gen = torch.Generator().manual_seed(recipe["seed"])
        steps = recipe["steps"]
        for step in range(steps):
            if recipe.get("schedule") == "linear":
                optimizer.param_groups[0]["lr"] = recipe["lr"] * (1 - step / steps)
            index = torch.randint(len(train), (recipe["batch"],), generator=gen)
            loss = F.cross_entropy(model(train.batch(index)), train.labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model


@torch.no_grad()
def classifier_accuracy(model: SmallCNN, data: ImageData) -> float:
    if data.labels is None:
        raise FIDError(f"{data.name} {data.split} has no labels to measure the classifier on")
    pred = torch.cat([model(data.batch(slice(i, i + 512))).argmax(1)
                      for i in range(0, len(data), 512)])
    return float((pred == data.labels).float().mean())


class _Features(nn.Module):
    def __init__(self, classifier: SmallCNN):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        return self.classifier.features(x)


# --- statistics of image sets -----------------------------------------------------------

def warn_if_singular(n: int, dims: int, what: str) -> str:
    if n < dims:
        msg = (f"{what}: {n} samples for {dims} feature dimensions, so the covariance is "
               "singular and the distance is biased; use more samples (FID: 10k or 50k)")
        warnings.warn(msg, stacklevel=3)
        return msg
    return ""


def features_of(extractor: FeatureExtractor, images, batch_size: int = 200) -> np.ndarray:
    """Features of an (N, C, H, W) tensor in [0, 1], or of an iterable of such batches."""
    if isinstance(images, torch.Tensor):
        tensor = images
        images = (tensor[i:i + batch_size] for i in range(0, tensor.shape[0], batch_size))
    return np.concatenate([extractor.features(b) for b in images])


def reference_statistics(extractor: FeatureExtractor, data: ImageData, n: int,
                         cache_dir: Path | None = None, batch_size: int = 200):
    """(mu, sigma, info) of ``n`` real images (all of them if there are fewer; a fixed
    subset otherwise), cached; ``info["cached"]`` says whether the cache was hit."""
    n = min(n, len(data))
    key = {"v": 1, "features": extractor.key, "data": data.describe(), "n": n, "subset_seed": 0}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = (Path(cache_dir or default_cache_dir()) / "fid_stats"
            / f"{extractor.name}-{data.name}-{data.split}-{n}-{digest}.npz")
    warning = warn_if_singular(n, extractor.dims, f"reference statistics of {data.name}")
    if path.exists():
        saved = np.load(path)
        return saved["mu"], saved["sigma"], {"cached": True, "path": str(path), "n": n,
                                             "warning": warning}
    if n < len(data):
        index = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n]
        index = index.sort().values
    else:
        index = torch.arange(len(data))
    batches = (data.batch(index[i:i + batch_size]) for i in range(0, n, batch_size))
    mu, sigma = statistics(features_of(extractor, batches))
    buf = io.BytesIO()
    np.savez(buf, mu=mu, sigma=sigma)
    atomic_write_bytes(path, buf.getvalue())
    return mu, sigma, {"cached": False, "path": str(path), "n": n, "warning": warning}


def distance_to_reference(extractor: FeatureExtractor, batches, n: int, reference) -> dict:
    """The Fréchet distance of generated ``batches`` (n images in all) to ``reference``
    (mu, sigma, info)."""
    warning = warn_if_singular(n, extractor.dims, "generated samples")
    mu, sigma = statistics(features_of(extractor, batches))
    ref_mu, ref_sigma, info = reference
    return {"fd": frechet_distance(mu, sigma, ref_mu, ref_sigma), "fd_name": extractor.name,
            "fd_samples": n, "fd_reference_samples": info["n"],
            "fd_warning": "; ".join(w for w in (warning, info["warning"]) if w)}
