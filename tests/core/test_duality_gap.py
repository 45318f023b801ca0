"""The duality gap of eq. (4), estimated on copies of the networks (iwgan.core.duality_gap):
zero at a saddle point made by hand, clearly positive far from it, never moving the
networks or a training stream."""

import math

import pytest
import torch

from iwgan.core.duality_gap import duality_gap
from iwgan.core.methods import Models, get_method
from iwgan.data.mixtures import get_mixture
from iwgan.engine.config import make_config
from iwgan.engine.trainer import train

X0 = torch.tensor([0.3, -0.7])


def single_point(n, generator=None):
    return X0.expand(n, 2).clone()


def converged_by_hand(method):
    """Data is the single point X0; G maps every code to X0 and f is constant: at the
    saddle point, so the gap is 0 (Theorem 2.2: G outputs P_X and L = 0)."""
    cfg = make_config("tiny", method=method)
    torch.manual_seed(0)
    models = get_method(method).build(cfg)
    with torch.no_grad():
        models.generator[-1].weight.zero_()
        models.generator[-1].bias.copy_(X0)
        models.critic[-1].weight.zero_()
    return cfg, models


@pytest.mark.parametrize("method", ["iwgan", "wgan_gp"])
def test_the_gap_is_zero_at_a_converged_point(method):
    cfg, models = converged_by_hand(method)
    out = duality_gap(models, cfg, single_point, torch.Generator().manual_seed(0), steps=5,
                      n_eval=64)
    assert out["dual_gap"] == pytest.approx(0.0, abs=1e-5)
    assert out["objective_heldout"] == pytest.approx(0.0, abs=1e-5)


def test_the_gap_is_clearly_positive_far_from_convergence():
    # Random G, Q with the data point ~4 away: L ~ 4, and a few Adam steps of the inf
    # copies already lower it by a clear margin (the estimate is a lower bound of the true
    # gap: the copies move at most ~lr per step and parameter).
    cfg = make_config("tiny", method="iwgan")
    torch.manual_seed(0)
    models = get_method("iwgan").build(cfg)
    out = duality_gap(models, cfg, lambda n, generator=None: single_point(n) + 3.0,
                      torch.Generator().manual_seed(0), steps=30, n_eval=64)
    assert out["dual_gap"] > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("method", ["iwgan", "wgan_gp"])
def test_the_gap_is_non_negative_up_to_noise_on_a_briefly_trained_model(method):
    cfg = make_config("tiny", method=method, iterations=20)
    models = train(cfg)[0].models
    out = duality_gap(models, cfg, get_mixture("ring").sample,
                      torch.Generator().manual_seed(1), steps=10, n_eval=500)
    assert out["dual_gap"] > -0.05


def test_the_gap_moves_neither_the_networks_nor_a_global_stream():
    cfg, models = converged_by_hand("iwgan")
    before = {n: p.clone() for n, p in models.named_parameters()}
    rng = torch.get_rng_state()
    duality_gap(models, cfg, get_mixture("ring").sample, torch.Generator().manual_seed(0),
                steps=3, n_eval=32)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[n], p) for n, p in models.named_parameters())


def test_bad_steps_are_refused():
    cfg = make_config("tiny", method="iwgan")
    models = get_method("iwgan").build(cfg)
    with pytest.raises(ValueError, match="gap_steps"):
        duality_gap(models, cfg, single_point, torch.Generator(), steps=0)


def test_models_without_an_encoder_get_the_wgan_gap():
    cfg, models = converged_by_hand("wgan_gp")
    assert isinstance(models, Models) and models.encoder is None
    out = duality_gap(models, cfg, single_point, torch.Generator().manual_seed(0), steps=2,
                      n_eval=16)
    assert math.isnan(out["gap_cheap_heldout"]) and math.isnan(out["recon_error"])
