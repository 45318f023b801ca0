"""iWGAN's and WGAN-GP's losses on hand-made critics, against values computed by hand.

A constant critic (output layer zeroed, bias c) has f = c everywhere and a zero input
gradient, so its gradient penalty is (0 - 1)^2 = 1; a critic whose only path is the
linear map a.x (hidden layers the identity on the positive quadrant) has gradient a. The
critics are the real mixture critic (the closed-form input gradient's path)."""

import pytest
import torch

from baselines import wgan_gp
from iwgan.core import iwgan
from iwgan.core.losses import mmd_imq
from iwgan.core.methods import get_method
from iwgan.engine.config import make_config

C = 0.7


def constant_critic(models, c=C):
    with torch.no_grad():
        models.critic[-1].weight.zero_()
        models.critic[-1].bias.fill_(c)


def batch(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(cfg.batch_size, 2, generator=g),
            torch.randn(cfg.batch_size, cfg.z_dim, generator=g),
            {"gp_eps": torch.rand(cfg.batch_size, 1, generator=g)})


@pytest.fixture
def cfg():
    return make_config("tiny", lambda_gp=5.0, lambda_mmd=10.0)


def test_iwgan_critic_loss_of_a_constant_critic_is_the_penalty_weight(cfg):
    models = iwgan.build(cfg)
    constant_critic(models)
    x, z, noise = batch(cfg)
    loss, logs = iwgan.critic_loss(models, x, z, cfg, noise)
    # f(G(z)) - f(G(Q(x))) = c - c = 0, and GP = (0 - 1)^2 = 1.
    assert float(logs["gradient_penalty"]) == 1.0
    assert float(loss) == pytest.approx(cfg.lambda_gp)


def generator_loss_of_a_constant_critic(cfg):
    """iWGAN's G/Q loss and logs under a constant critic, with what it is made of by hand:
    each sample's squared distance ||x - G(Q(x))||^2 and the MMD of Q(x) against z."""
    models = iwgan.build(cfg)
    constant_critic(models)
    x, z, noise = batch(cfg)
    loss, logs = iwgan.generator_loss(models, x, z, cfg, noise)
    with torch.no_grad():
        code = models.encoder(x)
        squared = ((x - models.generator(code)) ** 2).sum(dim=1)
        return loss, logs, squared, mmd_imq(code, z)


def test_iwgan_generator_loss_of_a_constant_critic_is_reconstruction_plus_mmd(cfg):
    loss, logs, squared, mmd = generator_loss_of_a_constant_critic(cfg)
    recon = squared.sqrt().mean()
    assert float(logs["reconstruction"]) == pytest.approx(float(recon), rel=1e-6)
    assert float(logs["objective_L"]) == pytest.approx(float(recon), rel=1e-6)   # + c - c
    assert float(loss) == pytest.approx(float(recon + cfg.lambda_mmd * mmd), rel=1e-6)
    # primal - dual = recon - (f(x) - f(G(z))) = recon - 0
    assert float(logs["dual_gap"]) == pytest.approx(float(recon), rel=1e-6)


def linear_critic(models, a):
    """f(x) = a.x through the mixture critic: hidden layers copy (x1, x2) into their
    first two units (kept positive by a bias of 10 that the output cancels)."""
    with torch.no_grad():
        for p in models.critic.parameters():
            p.zero_()
        linears = list(models.critic)[::2]
        linears[0].weight[0, 0] = linears[0].weight[1, 1] = 1.0
        linears[0].bias[:2] = 10.0
        for layer in linears[1:-1]:
            layer.weight[0, 0] = layer.weight[1, 1] = 1.0
        linears[-1].weight[0, :2] = torch.tensor(a)
        linears[-1].bias[0] = -10.0 * (a[0] + a[1])


def test_iwgan_and_wgan_gp_critic_losses_of_a_unit_slope_linear_critic(cfg):
    a = (0.6, 0.8)                                 # ||a|| = 1: no penalty
    x, z, noise = batch(cfg)
    models = iwgan.build(cfg)
    linear_critic(models, a)
    with torch.no_grad():
        fake = models.generator(z)
        recon = models.generator(models.encoder(x))
    slope = torch.tensor(a)
    loss, logs = iwgan.critic_loss(models, x, z, cfg, noise)
    assert float(logs["gradient_penalty"]) == pytest.approx(0.0, abs=1e-10)
    assert float(loss) == pytest.approx(float((fake - recon).mean(0) @ slope), abs=1e-5)

    w = wgan_gp.build(make_config("tiny", method="wgan_gp"))
    linear_critic(w, a)
    with torch.no_grad():
        fake = w.generator(z)
    loss, logs = wgan_gp.critic_loss(w, x, z, cfg, noise)
    assert float(logs["w_estimate"]) == pytest.approx(float((x - fake).mean(0) @ slope),
                                                       abs=1e-5)
    assert float(loss) == pytest.approx(-float(logs["w_estimate"]), abs=1e-8)
    loss, logs = wgan_gp.generator_loss(w, x, z, cfg, {})
    assert float(loss) == pytest.approx(-float(fake.mean(0) @ slope), abs=1e-5)


def test_a_twice_too_steep_linear_critic_pays_a_penalty_of_one(cfg):
    models = iwgan.build(cfg)
    linear_critic(models, (1.2, 1.6))              # ||a|| = 2: (2 - 1)^2
    x, z, noise = batch(cfg)
    _, logs = iwgan.critic_loss(models, x, z, cfg, noise)
    assert float(logs["gradient_penalty"]) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("method", ["iwgan", "wgan_gp", "ali", "alpha_gan"])
def test_every_loss_is_a_pure_function_of_its_inputs(method):
    cfg = make_config("tiny", method=method)
    module = get_method(method)
    torch.manual_seed(0)
    models = module.build(cfg)
    x, z, noise = batch(cfg)
    noise["code_noise"] = torch.randn(cfg.batch_size, cfg.z_dim)
    for phase in module.phases(cfg):
        state = torch.get_rng_state()
        first, _ = phase.loss(models, x, z, cfg, noise)
        second, _ = phase.loss(models, x, z, cfg, noise)
        assert torch.equal(first, second)
        assert torch.equal(state, torch.get_rng_state())    # nothing drawn globally


def test_the_squared_reconstruction_ablation_squares_the_norm(cfg):
    sq = make_config("tiny", lambda_gp=5.0, lambda_mmd=10.0,
                     options={"reconstruction": "l2_squared"})
    loss, logs, per_sample, mmd = generator_loss_of_a_constant_critic(sq)
    squared = per_sample.mean()
    assert float(logs["reconstruction"]) == pytest.approx(float(squared), rel=1e-6)
    assert float(loss) == pytest.approx(float(squared + sq.lambda_mmd * mmd), rel=1e-6)
    with pytest.raises(ValueError, match="'reconstruction' must be one of 'l2', 'l2_squared'"):
        make_config("tiny", options={"reconstruction": "l1"})


def test_generator_updates_per_iteration_come_from_the_methods_phases():
    """Algorithm 1: iWGAN takes n_critic G/Q steps an iteration, WGAN-GP one G step after
    its n_critic critic steps, ALI one; read from phases and optimisers, not names."""
    for n_critic in (1, 3, 5):
        cfg = make_config("quick", method="iwgan", n_critic=n_critic)
        assert get_method("iwgan").generator_updates(cfg) == n_critic
        cfg = make_config("quick", method="wgan_gp", n_critic=n_critic)
        assert get_method("wgan_gp").generator_updates(cfg) == 1
    assert get_method("ali").generator_updates(make_config("quick", method="ali")) == 1
