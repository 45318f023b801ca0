"""The statistics behind every verdict: t intervals and tests over seeds, Holm's correction,
Wilson intervals for success rates, rank and partial rank correlations, the power of
Welch's test, and the IMQ-kernel MMD with its exact values between Gaussians.

    mean over seeds        t interval and one-sided t test, df = n - 1
    difference of means    Welch: se^2 = s_a^2 / n_a + s_b^2 / n_b, Welch-Satterthwaite df
    Holm (1979)            sort the m p-values; p_(i) adjusted = max_{j <= i} min(1,
                           (m - j + 1) p_(j)): the family-wise error stays <= alpha
    Wilson (1927)          (p + z^2 / 2n +- z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n)
    partial Spearman       r_xy.z = (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)) on
                           ranks: how x tracks y beyond what z explains of both
    Welch power            P(T > t_crit) with T noncentral t, ncp = delta / sqrt((s_a^2 +
                           s_b^2) / n), n runs per group
    IMQ MMD^2              the training penalty's kernel sum_s C / (C + ||a - b||^2),
                           C = 2 dim s; between N(mu, sigma^2 I) and N(0, I) every term is
                           E C / (C + a V) with V a (noncentral) chi-square: one integral

Pure functions of numbers: no file, no model, no global random state.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from iwgan.core.losses import IMQ_SCALES

DIRECTIONS = ("greater", "less")


@dataclass(frozen=True)
class Estimate:
    """A mean over runs, or a difference of two such means, with its standard error and
    the degrees of freedom of its t distribution; ``n`` holds the runs behind it (one
    group, or two)."""

    value: float
    se: float
    df: float
    n: tuple[int, ...]

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """The two-sided t interval; (value, value) when the runs did not vary."""
        if not math.isfinite(self.se) or not math.isfinite(self.df):
            return float("nan"), float("nan")
        half = float(special.stdtrit(self.df, 0.5 + level / 2)) * self.se if self.se > 0 else 0.0
        return self.value - half, self.value + half

    def p_value(self, null: float = 0.0, direction: str = "greater") -> float:
        """One-sided p-value of H0: value <= null (``greater``) or value >= null
        (``less``). Runs that did not vary at all give 0 or 1 (a difference without
        spread is certain); too few runs give NaN."""
        check_direction(direction)
        if not math.isfinite(self.se) or not math.isfinite(self.value):
            return float("nan")
        sign = 1.0 if direction == "greater" else -1.0
        if self.se == 0:
            return 0.0 if sign * (self.value - null) > 0 else 1.0
        # stdtr is the t CDF as a plain ufunc: the simulations call this thousands of times
        return float(special.stdtr(self.df, -sign * (self.value - null) / self.se))


def check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v[np.isfinite(v)]


def mean_estimate(values) -> Estimate:
    """The mean of ``values`` (NaNs dropped) with its t standard error."""
    v = finite(values)
    n = len(v)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), (0,))
    se = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return Estimate(float(v.mean()), se, float(n - 1) if n > 1 else float("nan"), (n,))


def welch(a, b) -> Estimate:
    """mean(a) - mean(b) (NaNs dropped) with Welch's standard error and degrees of
    freedom."""
    a, b = finite(a), finite(b)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        value = a.mean() - b.mean() if na and nb else float("nan")
        return Estimate(float(value), float("nan"), float("nan"), (na, nb))
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
    se = math.sqrt(va + vb)
    df = ((va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))) if se > 0 else \
        float(na + nb - 2)
    return Estimate(float(a.mean() - b.mean()), se, float(df), (na, nb))


def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order; NaNs stay NaN and do not
    count towards the family's size."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a success rate of ``successes`` in ``n``."""
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in 0..{n}, got {successes}")
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def spearman(x, y) -> float:
    """Spearman's rank correlation over the pairs where both are finite (NaN when fewer
    than 3 or one side is constant)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(stats.spearmanr(x[ok], y[ok]).statistic)


def partial_spearman(x, y, z) -> float:
    """The rank correlation of x and y with z partialled out (on the triples where all
    three are finite): how far x tracks y beyond what z explains of both."""
    x, y, z = (np.asarray(v, float) for v in (x, y, z))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    if ok.sum() < 4:
        return float("nan")
    rxy, rxz, ryz = spearman(x[ok], y[ok]), spearman(x[ok], z[ok]), spearman(y[ok], z[ok])
    denominator = math.sqrt(max(0.0, (1 - rxz ** 2) * (1 - ryz ** 2)))
    if not all(map(math.isfinite, (rxy, rxz, ryz))) or denominator == 0:
        return float("nan")
    return (rxy - rxz * ryz) / denominator


def correlation_interval(r: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Fisher-z interval of a Spearman correlation over n pairs, with Bonett and Wright's
    (2000) variance (1 + r^2 / 2) / (n - 3)."""
    if n <= 3 or not math.isfinite(r):
        return float("nan"), float("nan")
    z = math.atanh(max(-0.999999, min(0.999999, r)))
    half = float(stats.norm.ppf(0.5 + level / 2)) * math.sqrt((1 + r * r / 2) / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


def correlation_p(r: float, n: int) -> float:
    """Two-sided p-value of a Spearman correlation of n pairs (t approximation)."""
    if n <= 2 or not math.isfinite(r):
        return float("nan")
    if abs(r) >= 1:
        return 0.0
    t = r * math.sqrt((n - 2) / (1 - r * r))
    return float(2 * stats.t.sf(abs(t), n - 2))


# ---------------------------------------------------------------------------------------
# Power of Welch's test
# ---------------------------------------------------------------------------------------

def welch_power(delta: float, sd_a: float, sd_b: float, n: int, alpha: float,
                sided: int = 1) -> float:
    """The power of Welch's test with ``n`` runs per group to detect a true difference
    ``delta`` (in the tested direction) between groups of standard deviations sd_a and
    sd_b, at level ``alpha`` (one- or two-sided), by the noncentral t."""
    if sided not in (1, 2):
        raise ValueError(f"sided must be 1 or 2, got {sided}")
    va, vb = sd_a ** 2, sd_b ** 2
    if n < 2 or va + vb == 0:
        return float("nan")
    se = math.sqrt((va + vb) / n)
    df = (va + vb) ** 2 * (n - 1) / (va ** 2 + vb ** 2)
    crit = float(stats.t.ppf(1 - alpha / sided, df))
    ncp = abs(delta) / se
    power = float(stats.nct.sf(crit, df, ncp))
    if sided == 2:
        power += float(stats.nct.cdf(-crit, df, ncp))
    return power


def runs_per_group(delta: float, sd_a: float, sd_b: float, alpha: float, power: float = 0.8,
                   sided: int = 1, n_max: int = 100_000) -> int | None:
    """The fewest runs per group for which Welch's test reaches ``power``; None when the
    groups show no spread (the power calculation does not apply) or no difference."""
    if sd_a ** 2 + sd_b ** 2 == 0 or delta == 0 or not math.isfinite(delta):
        return None
    lo, hi = 2, 2
    while welch_power(delta, sd_a, sd_b, hi, alpha, sided) < power:
        lo, hi = hi, hi * 2
        if hi > n_max:
            return None
    while lo < hi:   # the power grows with n: bisect for the first n that reaches it
        mid = (lo + hi) // 2
        if welch_power(delta, sd_a, sd_b, mid, alpha, sided) >= power:
            hi = mid
        else:
            lo = mid + 1
    return hi


# ---------------------------------------------------------------------------------------
# The IMQ MMD: its estimate, and its exact value between Gaussians
# ---------------------------------------------------------------------------------------

def imq_sum(d2: np.ndarray, dim: int, scales=IMQ_SCALES) -> np.ndarray:
    """sum_s C / (C + d2), C = 2 dim s: the kernel of iwgan.core.losses.mmd_imq."""
    return sum((2 * dim * s) / (2 * dim * s + d2) for s in scales)


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def within_mean(x: np.ndarray) -> float:
    """The mean kernel value over the distinct pairs of ``x`` (the unbiased term)."""
    n, dim = x.shape
    k = imq_sum(squared_distances(x, x), dim)
    return float((k.sum() - np.trace(k)) / (n * (n - 1)))


def mmd2(x, y) -> float:
    """The unbiased IMQ MMD^2 of two samples, as the training penalty and the latent
    permutation test compute it."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    cross = imq_sum(squared_distances(x, y), x.shape[1]).mean()
    return within_mean(x) + within_mean(y) - 2 * float(cross)


def _expected_kernel(scale_of_v: float, dim: int, noncentrality: float,
                     nodes: int = 200) -> float:
    """E sum_s C / (C + a V), V ~ chi^2_dim(noncentrality), a = ``scale_of_v``. V is
    (W + sqrt(noncentrality))^2 + U with W ~ N(0, 1) and U ~ chi^2_(dim - 1): Gauss-Hermite
    quadrature over W and generalised Gauss-Laguerre over U / 2; at 200 nodes it agrees
    with adaptive quadrature of the density to 1e-7 (the kernel's smallest scale, C = 0.2
    dim, is what needs that many)."""
    w, w_weights = special.roots_hermitenorm(nodes)
    w_weights = w_weights / w_weights.sum()
    v = (w + math.sqrt(noncentrality)) ** 2
    weights = w_weights
    if dim > 1:
        k = dim - 1
        t, t_weights = special.roots_genlaguerre(nodes, k / 2 - 1)
        v = v[:, None] + 2 * t[None, :]
        weights = w_weights[:, None] * (t_weights / t_weights.sum())[None, :]
    return float(sum(((2 * dim * s) / (2 * dim * s + scale_of_v * v) * weights).sum()
                     for s in IMQ_SCALES))


@functools.cache
def gaussian_mmd2(dim: int, sigma: float = 1.0, shift: float = 0.0) -> float:
    """The population IMQ MMD^2 between N(shift * 1, sigma^2 I) and N(0, I) in ``dim``
    dimensions: what the unbiased estimate of a sample of that law averages to."""
    mu2 = dim * shift ** 2
    return (_expected_kernel(2 * sigma ** 2, dim, 0.0) + _expected_kernel(2.0, dim, 0.0)
            - 2 * _expected_kernel(sigma ** 2 + 1, dim, mu2 / (sigma ** 2 + 1)))


@functools.cache
def null_mmd2_sd(dim: int, n: int, draws: int = 50, seed: int = 0) -> float:
    """The standard deviation of the MMD^2 estimate between two samples of n points of
    N(0, I) (a perfect encoder's spread), by simulation with a fixed seed."""
    rng = np.random.default_rng(seed)
    return float(np.std([mmd2(rng.standard_normal((n, dim)), rng.standard_normal((n, dim)))
                         for _ in range(draws)], ddof=1))
