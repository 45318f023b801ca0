import math

import numpy as np
import pytest
import torch

from iwgan.data.mixtures import MIXTURES, PRESETS, get_mixture
from iwgan.metrics.mixture import score_modes, w1_exact

MODES = {"ring": 8, "spiral": 20, "grid": 25}


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", MIXTURES)
def test_samples_from_the_true_mixture_cover_every_mode_with_98_9_pct_hq(name, preset):
    mixture = get_mixture(name, preset)
    samples = mixture.sample(20_000, torch.Generator().manual_seed(1)).numpy()
    score = score_modes(samples, mixture.centres, mixture.std)
    assert score["modes"] == MODES[name]
    # P(||N(0, std^2 I_2)|| <= 3 std) = 1 - exp(-9/2) = 98.89 %.
    assert score["hq_pct"] == pytest.approx(100 * (1 - math.exp(-4.5)), abs=0.3)
    assert score["kl"] < 0.01


def test_samples_collapsed_on_one_centre_cover_one_mode_with_kl_log_k():
    mixture = get_mixture("grid", "literature")
    samples = np.repeat(mixture.centres[3:4], 2500, axis=0)
    score = score_modes(samples, mixture.centres, mixture.std)
    assert score == {"modes": 1, "hq_pct": 100.0, "kl": pytest.approx(math.log(25))}


def test_a_point_exactly_at_3_std_counts_as_high_quality_and_beyond_does_not():
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    on_boundary = score_modes(np.array([[1.5, 0.0]]), centres, std=0.5)
    beyond = score_modes(np.array([[1.5 + 1e-9, 0.0]]), centres, std=0.5)
    assert (on_boundary["modes"], on_boundary["hq_pct"]) == (1, 100.0)
    assert (beyond["modes"], beyond["hq_pct"]) == (0, 0.0)
    assert math.isnan(beyond["kl"])


def test_w1_between_identical_sets_is_zero_and_a_shift_by_v_costs_norm_v():
    x = np.random.default_rng(0).normal(size=(2500, 2))
    assert w1_exact(x, x) == pytest.approx(0.0, abs=1e-9)
    assert w1_exact(x, x + np.array([3.0, -4.0])) == pytest.approx(5.0, rel=1e-9)


def test_w1_between_two_points_masses_is_their_distance():
    assert w1_exact(np.zeros((3, 2)), np.ones((5, 2))) == pytest.approx(math.sqrt(2))


def test_without_pot_w1_is_empty_and_says_why(monkeypatch):
    from iwgan.metrics.mixture import EvalData, compute_metrics, w1_unavailable

    assert w1_unavailable() is None                      # POT is installed here
    monkeypatch.setitem(__import__("sys").modules, "ot", None)   # import ot: ImportError
    reason = w1_unavailable()
    assert reason.startswith("W1 not computed: POT is not installed here")
    assert reason.endswith("pip install pot")
    mix = get_mixture("ring", "paper")
    g = torch.Generator().manual_seed(0)
    data = EvalData(samples=mix.sample(100, g).numpy(), real=mix.sample(100, g).numpy(),
                    centres=mix.centres, std=mix.std)
    metrics = compute_metrics(data)
    assert math.isnan(metrics["w1"]) and metrics["modes"] == 8   # the rest is computed
