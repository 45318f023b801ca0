"""Section 4 and Appendix E of the paper, measured on a trained method: the per-sample
quality score, the highest-density region (HDR) of the reconstruction error, outlier
detection by the score, latent-space normality tests and latent interpolations.

    quality score      q(x) = exp(-||x - G(Q(x))||)        (1 = perfect reconstruction)
    HDR (1-D)          the smallest set of reconstruction errors holding 1 - alpha of the
                       mass; U(alpha) = {x : e_x in that set} (Section 4)
    outlier AUROC      P(q(inlier) > q(outlier)) + P(tie) / 2, the Mann-Whitney U over
                       n_in * n_out, inliers from the mixture, outliers uniform over its
                       bounding box
    latent MMD test    IMQ-kernel MMD of Q(X) against N(0, I_z) with a permutation p-value
    normality          per latent dimension, Kolmogorov-Smirnov against N(0, 1) (the claim
                       is Q(X) ~ N(0, I), so the mean and the variance are part of it) and
                       Shapiro-Wilk (normal shape, any mean and variance)
    interpolation      G(lam z1 + (1 - lam) z2), lam in 0, 0.05, ..., 1; the fraction of
                       interpolants within 3 std of their nearest mode

Everything that needs Q refuses a method without an encoder with a clear message; every
random draw goes through an explicit ``torch.Generator`` (or a numpy Generator seeded from
one), never a global stream.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from iwgan.core.losses import IMQ_SCALES
from iwgan.core.methods import get_method
from iwgan.metrics.mixture import N_STD

LAMBDAS = np.round(np.arange(0, 21) * 0.05, 2)


def check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


# ---------------------------------------------------------------------------------------
# The quality score and the HDR of the reconstruction error
# ---------------------------------------------------------------------------------------

@torch.no_grad()
def reconstruction_errors(models, method: str, x: torch.Tensor) -> np.ndarray:
    """e_x = ||x - G(Q(x))|| per sample."""
    m = get_method(method)
    m.require_encoder("reconstruction error")
    return (x - m.generate(models, m.encode(models, x))).flatten(1).norm(dim=1).numpy()


def quality_score(models, method: str, x: torch.Tensor) -> np.ndarray:
    """exp(-||x - G(Q(x))||): 1 for a perfectly reconstructed sample, smaller away."""
    get_method(method).require_encoder("quality score")
    return np.exp(-reconstruction_errors(models, method, x))


def hdr_shortest_interval(samples, alpha: float) -> tuple[float, float]:
    """The shortest interval holding ceil((1 - alpha) n) of the samples: the HDR of a
    unimodal density (for a monotone density such as an error piled up at 0, it starts at
    the smallest sample)."""
    check_alpha(alpha)
    x = np.sort(np.asarray(samples, dtype=float))
    if len(x) == 0:
        raise ValueError("the HDR needs at least one sample")
    k = min(len(x), max(1, math.ceil((1 - alpha) * len(x))))
    widths = x[k - 1:] - x[:len(x) - k + 1]
    i = int(np.argmin(widths))
    return float(x[i]), float(x[i + k - 1])


def hdr_kde(samples, alpha: float, grid_points: int = 1024, max_level_points: int = 4000):
    """Hyndman's (1996) HDR from a Gaussian KDE: {e : p(e) >= p_alpha} with p_alpha the
    alpha-quantile of the density at the samples, so that the set holds 1 - alpha of the
    mass; works for multimodal densities. The quantile is taken over at most
    ``max_level_points`` evenly spaced sorted samples (the KDE costs n per point).
    Returns (list of (lo, hi) intervals, p_alpha)."""
    check_alpha(alpha)
    x = np.asarray(samples, dtype=float)
    kde = stats.gaussian_kde(x)
    sorted_x = np.sort(x)
    at = sorted_x[np.linspace(0, len(x) - 1, min(len(x), max_level_points)).astype(int)]
    level = float(np.quantile(kde(at), alpha))
    pad = 3 * x.std(ddof=1) * kde.factor
    grid = np.linspace(x.min() - pad, x.max() + pad, grid_points)
    inside = np.concatenate([[False], kde(grid) >= level, [False]]).astype(int)
    starts = np.flatnonzero(np.diff(inside) == 1)      # first grid index inside
    ends = np.flatnonzero(np.diff(inside) == -1) - 1   # last grid index inside
    return [(float(grid[a]), float(grid[b])) for a, b in zip(starts, ends)], level


# ---------------------------------------------------------------------------------------
# Outlier detection
# ---------------------------------------------------------------------------------------

def auroc(positive, negative) -> float:
    """Area under the ROC curve of scores where ``positive`` should score higher:
    the Mann-Whitney U of the positives over n_pos * n_neg (ties count one half)."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("AUROC needs at least one positive and one negative score")
    u = stats.mannwhitneyu(positive, negative, alternative="two-sided").statistic
    return float(u / (len(positive) * len(negative)))


def bounding_box(centres: np.ndarray, std: float, pad: float = 0.1):
    """The centres' box widened by 3 std plus ``pad`` of its larger side on every side."""
    lo, hi = centres.min(axis=0), centres.max(axis=0)
    margin = N_STD * std + pad * float((hi - lo).max())
    return lo - margin, hi + margin


def outlier_auroc(models, method: str, mixture, generator: torch.Generator,
                  n: int = 1000) -> dict:
    """Inliers from the mixture against outliers uniform over its bounding box; the score
    is the quality score (higher = inlier). Uniform outliers that land on a mode are
    indistinguishable from inliers, so even a perfect score stays below 1."""
    get_method(method).require_encoder("quality score")
    lo, hi = bounding_box(mixture.centres, mixture.std)
    inliers = mixture.sample(n, generator=generator)
    u = torch.rand(n, 2, generator=generator)
    dtype = torch.get_default_dtype()   # float32 unless a test asks for float64
    outliers = torch.as_tensor(lo, dtype=dtype) + u * torch.as_tensor(hi - lo, dtype=dtype)
    return {"auroc": auroc(quality_score(models, method, inliers),
                           quality_score(models, method, outliers))}


def quality_map(models, method: str, centres: np.ndarray, std: float, resolution: int = 80):
    """The quality score on a regular grid over the bounding box: (xs, ys, scores)."""
    get_method(method).require_encoder("quality score")
    lo, hi = bounding_box(centres, std)
    xs = np.linspace(lo[0], hi[0], resolution)
    ys = np.linspace(lo[1], hi[1], resolution)
    xx, yy = np.meshgrid(xs, ys)
    pts = torch.as_tensor(np.stack([xx.ravel(), yy.ravel()], axis=1),
                          dtype=torch.get_default_dtype())
    return xs, ys, quality_score(models, method, pts).reshape(resolution, resolution)


def near_mode_mask(points: np.ndarray, centres: np.ndarray, std: float,
                   n_std: float = N_STD) -> np.ndarray:
    dist = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=2).min(axis=1)
    return dist <= n_std * std


# ---------------------------------------------------------------------------------------
# The latent space
# ---------------------------------------------------------------------------------------

def imq_kernel(a: np.ndarray, b: np.ndarray, scales=IMQ_SCALES) -> np.ndarray:
    """The IMQ kernel of iwgan.core.losses.mmd_imq, summed over scales, as a matrix."""
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    dim = a.shape[1]
    return sum((2 * dim * s) / (2 * dim * s + d2) for s in scales)


def mmd_permutation_test(codes, prior, generator: torch.Generator,
                         permutations: int = 200) -> dict:
    """The unbiased IMQ MMD^2 of ``codes`` against ``prior`` (as the training penalty) and
    its permutation p-value (1 + #{perm >= observed}) / (1 + permutations)."""
    if permutations <= 0:
        raise ValueError(f"permutations must be a positive integer, got {permutations}")
    x, y = np.asarray(codes, float), np.asarray(prior, float)
    n, m = len(x), len(y)
    joint = np.concatenate([x, y])
    k = imq_kernel(joint, joint)
    np.fill_diagonal(k, 0.0)

    def statistics(in_x):
        # Indicator rows of the x-group: s K s^T sums over pairs, diagonal zeroed above.
        a = in_x.astype(float)
        b = 1.0 - a
        ka = a @ k
        return ((ka * a).sum(1) / (n * (n - 1)) + ((b @ k) * b).sum(1) / (m * (m - 1))
                - 2 * (ka * b).sum(1) / (n * m))

    first = np.arange(n + m) < n
    observed = statistics(first[None])[0]
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    null = statistics(np.stack([rng.permutation(first) for _ in range(permutations)]))
    return {"latent_mmd": float(observed),
            "latent_mmd_p": float((1 + (null >= observed).sum()) / (1 + permutations))}


def normality_tests(codes) -> dict:
    """Per latent dimension: KS against N(0, 1) and Shapiro-Wilk p-values, and how many
    dimensions each rejects at 5 % after a Bonferroni correction over the dimensions."""
    codes = np.asarray(codes, float)
    dims = codes.shape[1]
    ks = [float(stats.kstest(codes[:, j], "norm").pvalue) for j in range(dims)]
    sw = [float(stats.shapiro(codes[:, j]).pvalue) for j in range(dims)]
    out = {f"ks_p_{j}": p for j, p in enumerate(ks)}
    out.update({f"shapiro_p_{j}": p for j, p in enumerate(sw)})
    out.update(ks_rejected=int(sum(p < 0.05 / dims for p in ks)),
               shapiro_rejected=int(sum(p < 0.05 / dims for p in sw)),
               code_mean_abs=float(np.abs(codes.mean(axis=0)).max()),
               code_std_min=float(codes.std(axis=0).min()),
               code_std_max=float(codes.std(axis=0).max()))
    return out


# ---------------------------------------------------------------------------------------
# Interpolations (Appendix E, Figure 8)
# ---------------------------------------------------------------------------------------

@torch.no_grad()
def interpolations(models, method: str, z1: torch.Tensor, z2: torch.Tensor,
                   lambdas=LAMBDAS) -> np.ndarray:
    """G(lam z1 + (1 - lam) z2) for every pair and lam: (pairs, len(lambdas), x_dim)."""
    lam = torch.as_tensor(np.asarray(lambdas), dtype=z1.dtype)[None, :, None]
    z = lam * z1[:, None, :] + (1 - lam) * z2[:, None, :]
    out = get_method(method).generate(models, z.reshape(-1, z1.shape[1]))
    return out.reshape(z1.shape[0], len(lambdas), -1).numpy()


def interpolation_near_mode_fraction(paths: np.ndarray, centres: np.ndarray,
                                     std: float) -> float:
    """Fraction of interpolants (end points included) within 3 std of a mode."""
    return float(near_mode_mask(paths.reshape(-1, paths.shape[-1]), centres, std).mean())
