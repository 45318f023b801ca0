"""The quality score, the HDR of the reconstruction error, AUROC, latent tests and
interpolations: closed-form and hand-made cases."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from iwgan.core.methods import Models, get_method
from iwgan.data.mixtures import get_mixture
from iwgan.engine.config import make_config
from iwgan.metrics import quality


def perfect_autoencoder(z_dim=5):
    """Q(x) = (x, 0, 0, 0), G(z) = z[:2]: G(Q(x)) = x exactly."""
    q, g = nn.Linear(2, z_dim), nn.Linear(z_dim, 2)
    with torch.no_grad():
        q.weight.zero_()
        q.weight[:2, :2] = torch.eye(2)
        q.bias.zero_()
        g.weight.zero_()
        g.weight[:, :2] = torch.eye(2)
        g.bias.zero_()
    return Models(generator=g, critic=nn.Linear(2, 1), encoder=q)


def test_hdr_of_a_standard_normal_is_plus_minus_1_96():
    x = torch.randn(40_000, generator=torch.Generator().manual_seed(0)).numpy()
    lo, hi = quality.hdr_shortest_interval(x, 0.05)
    z = stats.norm.ppf(0.975)
    # The width is flat in the interval's position near the optimum: the width is sharp,
    # the end points less so.
    assert hi - lo == pytest.approx(2 * z, abs=0.04)
    assert lo == pytest.approx(-z, abs=0.1) and hi == pytest.approx(z, abs=0.1)


def test_hdr_of_an_exponential_error_starts_at_zero_and_ends_at_minus_log_alpha():
    # A reconstruction error piles up at 0: for Exp(1) the HDR is [0, -log(alpha)].
    x = np.random.default_rng(0).exponential(size=40_000)
    for alpha in (0.05, 0.2):
        lo, hi = quality.hdr_shortest_interval(x, alpha)
        assert lo == pytest.approx(0.0, abs=0.01)
        assert hi == pytest.approx(-math.log(alpha), rel=0.03)


def test_kde_hdr_of_a_bimodal_density_matches_its_analytic_two_intervals():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-3, 1, 10_000), rng.normal(3, 1, 10_000)])
    intervals, _ = quality.hdr_kde(x, 0.05)
    # Analytic: the level set {p >= c} holding 95 % of 0.5 N(-3, 1) + 0.5 N(3, 1).
    grid = np.linspace(-9, 9, 180_001)
    p = 0.5 * stats.norm.pdf(grid, -3) + 0.5 * stats.norm.pdf(grid, 3)
    order = np.argsort(p)[::-1]
    mass = np.cumsum(p[order]) * (grid[1] - grid[0])
    level = p[order][np.searchsorted(mass, 0.95)]
    inside = grid[p >= level]
    right = inside[inside > 0]
    assert len(intervals) == 2
    (a_lo, a_hi), (b_lo, b_hi) = intervals
    assert b_lo == pytest.approx(right.min(), abs=0.1)
    assert b_hi == pytest.approx(right.max(), abs=0.1)
    assert a_lo == pytest.approx(-right.max(), abs=0.1)
    assert a_hi == pytest.approx(-right.min(), abs=0.1)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_alpha_outside_the_open_unit_interval_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha must lie in"):
        quality.hdr_shortest_interval([1.0, 2.0], alpha)
    with pytest.raises(ValueError, match="alpha must lie in"):
        quality.hdr_kde([1.0, 2.0, 3.0], alpha)


def test_auroc_is_1_on_separable_scores_0_reversed_and_half_on_identical():
    assert quality.auroc([2.0, 3.0, 4.0], [0.0, 1.0]) == 1.0
    assert quality.auroc([0.0, 1.0], [2.0, 3.0, 4.0]) == 0.0
    assert quality.auroc([1.0, 1.0], [1.0, 1.0, 1.0]) == 0.5
    with pytest.raises(ValueError):
        quality.auroc([], [1.0])


def test_a_perfect_autoencoder_scores_every_point_1_and_cannot_tell_outliers():
    models = perfect_autoencoder()
    x = torch.randn(50, 2)
    assert np.allclose(quality.quality_score(models, "iwgan", x), 1.0)
    mixture = get_mixture("ring")
    out = quality.outlier_auroc(models, "iwgan", mixture, torch.Generator().manual_seed(0),
                                n=200)
    assert out["auroc"] == pytest.approx(0.5)


def test_a_method_without_encoder_is_refused_with_a_clear_message():
    cfg = make_config("tiny", method="wgan_gp")
    models = get_method("wgan_gp").build(cfg)
    for fn in (quality.quality_score, quality.reconstruction_errors):
        with pytest.raises(ValueError, match="'wgan_gp' has no encoder"):
            fn(models, "wgan_gp", torch.zeros(3, 2))
    with pytest.raises(ValueError, match="'wgan_gp' has no encoder"):
        quality.quality_map(models, "wgan_gp", np.zeros((2, 2)), 0.1)


def test_mmd_permutation_test_is_calibrated_under_the_null_and_rejects_a_shift():
    null_p = []
    for seed in range(8):
        g = torch.Generator().manual_seed(seed)
        a, b = torch.randn(200, 5, generator=g).numpy(), torch.randn(200, 5, generator=g).numpy()
        null_p.append(quality.mmd_permutation_test(a, b, g, permutations=50)["latent_mmd_p"])
    assert np.median(null_p) > 0.2  # p-values of a true null are uniform, not near 0
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 5, generator=g).numpy(), torch.randn(200, 5, generator=g).numpy()
    shifted = quality.mmd_permutation_test(a + 1.0, b, g, permutations=100)
    assert shifted["latent_mmd_p"] == pytest.approx(1 / 101)


def test_mmd_statistic_equals_the_training_penalty_estimator():
    from iwgan.core.losses import mmd_imq

    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(40, 5, generator=g), torch.randn(50, 5, generator=g) + 0.5
    out = quality.mmd_permutation_test(a.numpy(), b.numpy(), g, permutations=5)
    assert out["latent_mmd"] == pytest.approx(float(mmd_imq(a.double(), b.double())), rel=1e-9)


def test_normality_tests_pass_standard_normal_codes_and_reject_scaled_ones():
    codes = np.random.default_rng(0).standard_normal((500, 5))
    assert quality.normality_tests(codes)["ks_rejected"] == 0
    assert quality.normality_tests(codes)["shapiro_rejected"] == 0
    out = quality.normality_tests(0.2 * codes)
    assert out["ks_rejected"] == 5 and out["shapiro_rejected"] == 0  # normal, wrong scale


def test_interpolations_of_a_linear_generator_are_straight_lines_and_hit_modes():
    models = perfect_autoencoder()
    z1, z2 = torch.zeros(1, 5), torch.zeros(1, 5)
    z1[0, 0], z2[0, 1] = 1.0, 1.0
    paths = quality.interpolations(models, "iwgan", z1, z2)
    assert paths.shape == (1, 21, 2)
    assert np.allclose(paths[0, 0], [0, 1]) and np.allclose(paths[0, -1], [1, 0])
    assert np.allclose(paths[0, 10], [0.5, 0.5], atol=1e-6)
    centres = np.array([[0.0, 1.0], [1.0, 0.0]])
    # Only the two ends are within 3 std (std 0.01) of a mode.
    assert quality.interpolation_near_mode_fraction(paths, centres, 0.01) == pytest.approx(2 / 21)
