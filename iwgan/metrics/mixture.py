"""Metrics, registered by a name that carries their protocol. Each takes an
:class:`EvalData` and returns a dict of named numbers; a metric that does not apply to a
method (an encoder metric for a method without encoder) returns NaNs, which reports show
as "n/a", never as 0."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from iwgan.core.losses import mmd_imq
from iwgan.data.mixtures import get_mixture
from iwgan.engine.records import TRAINED
from iwgan.engine.seeds import derived_generator

METRICS: dict = {}
N_STD = 3.0


def register_metric(fn):
    METRICS[fn.__name__] = fn
    return fn


@dataclass
class EvalData:
    samples: np.ndarray               # G(z), (N, 2)
    real: np.ndarray                  # fresh draws from the mixture, (N, 2)
    centres: np.ndarray               # (K, 2)
    std: float
    reconstruction_errors: np.ndarray | None = None   # ||x - G(Q(x))|| on ``real``
    codes: np.ndarray | None = None                   # Q(real), (N, z_dim)
    prior: np.ndarray | None = None                   # z ~ N(0, I), (N, z_dim)


def score_modes(samples: np.ndarray, centres: np.ndarray, std: float, n_std: float = N_STD):
    """The standard protocol (VEEGAN, PacGAN, GDPP). A sample is high quality when its
    distance to the nearest centre is at most ``n_std`` stds (inclusive, as VEEGAN and GDPP;
    PacGAN counts strictly); a mode is covered when it is the nearest centre of at least
    one high-quality sample. KL is that of the histogram of high-quality samples over the
    modes against the uniform distribution (NaN when there are none)."""
    dist = np.linalg.norm(samples[:, None, :] - centres[None, :, :], axis=2)
    nearest, nearest_dist = dist.argmin(axis=1), dist.min(axis=1)
    hq = nearest_dist <= n_std * std
    counts = np.bincount(nearest[hq], minlength=len(centres))
    if counts.sum() == 0:
        kl = float("nan")
    else:
        p = counts[counts > 0] / counts.sum()
        kl = float(np.sum(p * np.log(p * len(centres))))
    return {"modes": int((counts > 0).sum()), "hq_pct": 100.0 * float(hq.mean()), "kl": kl}


def run_score(row, modes_total: int) -> float:
    """The one score (docs/tuning.md), stated before any run: covered modes / K times HQ %
    / 100; a diverged run scores 0."""
    if row["status"] not in TRAINED:
        return 0.0
    modes, hq = row["modes"], row["hq_pct"]
    if any(isinstance(v, float) and math.isnan(v) for v in (modes, hq)):
        return 0.0
    return float(modes) / modes_total * float(hq) / 100.0


def w1_unavailable() -> str | None:
    """None where POT (the exact W1's solver) imports; else why not, in one line. A run
    without it records W1 empty, with this reason in its results row (a GPU machine
    may lack POT: benchmarks/gpu_campaign.py carries its wheel, or degrades so)."""
    try:
        import ot  # noqa: F401  (only W1 needs it)
    except ImportError as err:
        return f"W1 not computed: POT is not installed here ({err}); pip install pot"
    return None


def w1_exact(x: np.ndarray, y: np.ndarray) -> float:
    """Exact 1-Wasserstein distance between two empirical distributions with uniform
    weights, by the network simplex of POT (Euclidean ground cost)."""
    import ot  # POT takes ~3 s to import; only W1 needs it

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    cost = ot.dist(x, y, metric="euclidean")
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    return float(ot.emd2(a, b, cost, numItermax=10_000_000))


@functools.cache
def w1_floor(mixture: str, preset: str, n: int, repeats: int = 5) -> float:
    """Mean exact W1 between two independent real samples of n points: the value a
    perfect generator scores, i.e. the noise floor of the W1 curve at that sample size."""
    mix = get_mixture(mixture, preset)
    gen = derived_generator(0, f"w1-floor-{mixture}-{preset}-{n}")
    return float(np.mean([w1_exact(mix.sample(n, gen).numpy(), mix.sample(n, gen).numpy())
                          for _ in range(repeats)]))


@register_metric
def mode_coverage_3std(data: EvalData) -> dict:
    return score_modes(data.samples, data.centres, data.std)


@register_metric
def w1_ot(data: EvalData) -> dict:
    """Exact W1; NaN where POT is missing (:func:`w1_unavailable` says why)."""
    if w1_unavailable():
        return {"w1": float("nan")}
    return {"w1": w1_exact(data.samples, data.real)}


@register_metric
def reconstruction_l2(data: EvalData) -> dict:
    """Mean ||x - G(Q(x))|| over fresh real samples."""
    if data.reconstruction_errors is None:
        return {"recon_error": float("nan")}
    return {"recon_error": float(np.mean(data.reconstruction_errors))}


@register_metric
def latent_mmd_imq(data: EvalData) -> dict:
    """IMQ-kernel MMD of Q(X) against draws from N(0, I) (the penalty's own estimator)."""
    if data.codes is None:
        return {"latent_mmd": float("nan")}
    value = mmd_imq(torch.as_tensor(data.codes), torch.as_tensor(data.prior))
    return {"latent_mmd": float(value)}


def compute_metrics(data: EvalData, names=None) -> dict:
    out = {}
    for name in names or METRICS:
        out.update(METRICS[name](data))
    return out
