"""Evaluation costs: the Fréchet distance at 2,048 dimensions, Inception features, the
mode-coverage scorer and the exact optimal-transport W1 at 2,500 samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iwgan.data.mixtures import get_mixture
from iwgan.engine.devices import sync
from iwgan.metrics.mixture import score_modes, w1_exact


def frechet():
    """iwgan.metrics.fid.frechet_distance if the suite has it, else scipy directly (the same
    closed form); returns (function, which)."""
    try:
        from iwgan.metrics.fid import frechet_distance
        return frechet_distance, "iwgan.metrics.fid.frechet_distance"
    except ImportError:
        import scipy.linalg

        def frechet_distance(mu1, s1, mu2, s2):
            covmean = scipy.linalg.sqrtm(s1 @ s2).real
            return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))
        return frechet_distance, "scipy.linalg.sqrtm directly (iwgan.metrics.fid absent)"


def test_frechet_distance_2048(benchmark):
    fn, which = frechet()
    rng = np.random.default_rng(0)
    stats = []
    for _ in range(2):  # full-rank covariances from 4,096 feature vectors each
        f = rng.standard_normal((4096, 2048)) @ (rng.standard_normal((2048, 2048)) * 0.05)
        stats += [f.mean(0), np.cov(f, rowvar=False)]
    benchmark.pedantic(fn, args=tuple(stats), rounds=1, iterations=1)
    benchmark.extra_info.update(implementation=which, dims=2048, items_per_s=None)


def test_inception_features(benchmark, device):
    """pytorch-fid's InceptionV3 (pool3, 2,048 features), randomly initialised (no
    weights can be downloaded here; the cost is the same), images/s at 64x64 input
    (resized to 299 inside)."""
    try:
        from iwgan.metrics.fid import inception_extractor

        extractor = inception_extractor(random_init_seed=0, device=device)
    except ImportError as err:
        pytest.skip(f"no Inception here: {err}")
    except RuntimeError as err:  # torchvision's import trap (docs: environment.md)
        pytest.skip(f"torchvision/pytorch-fid do not import here: {err}")
    batch = 8 if device == "cpu" else 200
    images = torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    extractor.features(images)

    def run():
        extractor.features(images)
        sync(device)

    benchmark.pedantic(run, rounds=2 if device == "cpu" else 10, iterations=1)
    benchmark.extra_info.update(images_per_call=batch,
                                items_per_s=batch / benchmark.stats.stats.median,
                                unit="images", weights="random init (He normal convs)")


def eval_samples(n=2500):
    g = torch.Generator().manual_seed(0)
    mixture = get_mixture("grid", "paper")
    return mixture, mixture.sample(n, generator=g).numpy(), mixture.sample(n, generator=g).numpy()


def test_mode_coverage_scorer_2500(benchmark):
    mixture, samples, _ = eval_samples()
    benchmark(score_modes, samples, mixture.centres, mixture.std)
    benchmark.extra_info.update(samples=2500, items_per_s=2500 / benchmark.stats.stats.median,
                                unit="samples")


def test_w1_exact_2500(benchmark):
    _, samples, real = eval_samples()
    w1_exact(samples[:10], real[:10])  # POT's import (~3 s) outside the timing
    benchmark.pedantic(w1_exact, args=(samples, real), rounds=3, iterations=1)
    benchmark.extra_info.update(samples=2500, items_per_s=2500 / benchmark.stats.stats.median,
                                unit="samples")
