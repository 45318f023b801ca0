"""The GAN, ALI, BiGAN and alpha-GAN: one step per method and option, losses on hand-made
cases, bad options.

The hand-made cases zero a discriminator's output layer so that it outputs the logit 0
everywhere: every GAN term sp(+-0) is then log 2, and every density-ratio term is 0.
"""

import math

import pytest
import torch

from baselines import ali, alpha_gan, bigan, gan
from iwgan.core.methods import get_method
from iwgan.core.networks import build_networks
from iwgan.data.mixtures import MixtureBatches
from iwgan.engine.config import make_config
from iwgan.engine.trainer import Trainer

LOG2 = math.log(2)
VARIANTS = [("gan", {}), ("ali", {}), ("bigan", {}),
            ("alpha_gan", {}), ("alpha_gan", {"adversarial_loss": "non_saturating"})]


def batch(cfg):
    return torch.randn(cfg.batch_size, 2), torch.randn(cfg.batch_size, cfg.z_dim)


def noise(cfg):
    return {"code_noise": torch.randn(cfg.batch_size, cfg.z_dim)}


def logs_of(loss_fn, models, cfg, x=None, z=None):
    """A method's loss function on a batch: its logs as floats."""
    if x is None:
        x, z = batch(cfg)
    _, logs = loss_fn(models, x, z, cfg, noise(cfg))
    return {k: float(v) for k, v in logs.items()}


def zero_output_layer(net):
    with torch.no_grad():
        net[-1].weight.zero_()
        net[-1].bias.zero_()


def snapshot(models):
    return {k: [p.detach().clone() for p in m.parameters()] for k, m in models.named().items()}


@pytest.mark.parametrize(("method", "options"), VARIANTS)
def test_one_step_of_each_phase_updates_every_module_and_logs_finite_detached_values(
        method, options):
    cfg = make_config("tiny", method=method, options=options)
    module = get_method(method)
    trainer = Trainer([cfg], MixtureBatches([cfg]))
    models = trainer.members.member(0)
    before = snapshot(models)
    logs = {}
    for phase in module.phases(cfg):
        logs.update(trainer.members.step(phase, *trainer.members.draw(phase, trainer.data)))
    assert set(logs) == set(module.LOGS)
    for name, value in logs.items():
        assert value.shape == () and not value.requires_grad and math.isfinite(value), name
    after = snapshot(models)
    for name in before:
        assert any(not torch.equal(a, b) for a, b in zip(before[name], after[name])), name


@pytest.mark.parametrize("module", [ali, bigan], ids=["ali", "bigan"])
def test_ali_and_bigan_losses_are_2_log_2_when_the_discriminator_outputs_logit_0(module):
    cfg = make_config("tiny", method=module.__name__.split(".")[-1])
    models = module.build(cfg)
    zero_output_layer(models.critic)
    logs = logs_of(module.critic_loss, models, cfg)
    assert logs["discriminator_loss"] == pytest.approx(2 * LOG2)
    assert logs["d_real"] == pytest.approx(0.5)
    assert logs["d_fake"] == pytest.approx(0.5)
    logs = logs_of(module.generator_loss, models, cfg)
    assert logs["generator_loss"] == pytest.approx(2 * LOG2)


def test_gan_losses_are_2_log_2_and_log_2_when_the_discriminator_outputs_logit_0():
    # the non-saturating generator loss -log D(G(z)) has one term: log 2 at D = 1/2
    cfg = make_config("tiny", method="gan")
    models = gan.build(cfg)
    zero_output_layer(models.critic)
    logs = logs_of(gan.critic_loss, models, cfg)
    assert logs["discriminator_loss"] == pytest.approx(2 * LOG2)
    assert logs["d_real"] == pytest.approx(0.5) and logs["d_fake"] == pytest.approx(0.5)
    assert logs_of(gan.generator_loss, models, cfg)["generator_loss"] == pytest.approx(LOG2)


def test_gan_losses_on_a_constant_logit_are_the_closed_form_ones():
    # D = c everywhere: discriminator sp(-c) + sp(c), generator (non-saturating) sp(-c);
    # the saturating generator loss -sp(c) would differ
    c = 1.5
    cfg = make_config("tiny", method="gan")
    models = gan.build(cfg)
    zero_output_layer(models.critic)
    with torch.no_grad():
        models.critic[-1].bias.fill_(c)
    sp = lambda t: math.log1p(math.exp(t))  # noqa: E731
    assert logs_of(gan.critic_loss, models, cfg)["discriminator_loss"] == \
        pytest.approx(sp(-c) + sp(c))
    assert logs_of(gan.generator_loss, models, cfg)["generator_loss"] == pytest.approx(sp(-c))


def test_gan_is_the_shared_generator_and_critic_with_no_encoder():
    cfg = make_config("tiny", method="gan")
    torch.manual_seed(0)
    models = gan.build(cfg)
    torch.manual_seed(0)
    nets = build_networks(cfg.arch, cfg.width, cfg.z_dim)
    assert models.encoder is None and not models.extra
    for mine, shared in ((models.generator, nets.generator), (models.critic, nets.critic)):
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(),
                                                     shared.state_dict().values()))
    assert not get_method("gan").has_encoder


def test_bigan_is_ali_with_a_deterministic_encoder_and_no_other_change():
    # one place for the logic: BiGAN's losses are ALI's functions, its builders ALI's
    assert bigan.critic_loss is ali.critic_loss and bigan.generator_loss is ali.generator_loss
    assert bigan.LOGS == ali.LOGS
    cfg = make_config("tiny", method="bigan")
    torch.manual_seed(0)
    models = bigan.build(cfg)
    torch.manual_seed(0)
    stochastic = ali.build(make_config("tiny", method="ali"))
    assert "log_std" not in models.extra and "log_std" in stochastic.extra
    for name, module in models.named().items():   # the same initial networks, seed for seed
        assert all(torch.equal(a, b) for a, b in zip(
            module.state_dict().values(), stochastic.named()[name].state_dict().values()))
    assert [p.draws for p in bigan.phases(cfg)] == [(), ()]
    assert [p.draws for p in ali.phases(cfg)] == [("code_noise",), ("code_noise",)]
    x = torch.randn(8, 2)
    assert torch.equal(ali.code(models, x, {}), models.encoder(x))


@pytest.mark.parametrize(("adversarial_loss", "g_terms", "q_terms"),
                         [("density_ratio", 0.0, 0.0), ("non_saturating", 2 * LOG2, LOG2)])
def test_alpha_gan_losses_on_logit_0_discriminators_and_a_zero_generator(
        adversarial_loss, g_terms, q_terms):
    lambda_rec = 2.5
    cfg = make_config("tiny", method="alpha_gan",
                      options={"lambda_rec": lambda_rec, "adversarial_loss": adversarial_loss})
    models = alpha_gan.build(cfg)
    zero_output_layer(models.critic)
    zero_output_layer(models.extra["code_critic"])
    logs = logs_of(alpha_gan.critic_loss, models, cfg)
    assert logs["discriminator_loss"] == pytest.approx(3 * LOG2)
    assert logs["code_discriminator_loss"] == pytest.approx(2 * LOG2)

    zero_output_layer(models.generator)  # G(.) = 0, so the L1 error is ||x||_1
    x, z = batch(cfg)
    logs = logs_of(alpha_gan.generator_loss, models, cfg, x, z)
    l1 = x.abs().sum(dim=1).mean().item()
    assert logs["reconstruction"] == pytest.approx(l1)
    assert logs["generator_loss"] == pytest.approx(lambda_rec * l1 + g_terms)
    assert logs["encoder_loss"] == pytest.approx(lambda_rec * l1 + q_terms)


def test_alpha_gan_encoder_learns_only_from_reconstruction_and_the_code_discriminator():
    # No reconstruction weight and a constant code discriminator: whatever the image
    # discriminator says, Q must not move (Algorithm 1 gives D's gradient to G only).
    cfg = make_config("tiny", method="alpha_gan", options={"lambda_rec": 0.0})
    models = alpha_gan.build(cfg)
    with torch.no_grad():
        for p in models.extra["code_critic"].parameters():
            p.zero_()
    loss, _ = alpha_gan.generator_loss(models, *batch(cfg), cfg, {})
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in models.encoder.parameters())
    assert any(p.grad is not None and p.grad.any() for p in models.generator.parameters())


def test_ali_codes_x_by_a_reparameterised_draw_whose_mean_is_encode():
    cfg = make_config("tiny", method="ali")
    models = ali.build(cfg)
    x = torch.randn(64, 2)
    eps = torch.randn(64, cfg.z_dim)
    with torch.no_grad():
        draw = ali.code(models, x, {"code_noise": eps})
        second = ali.code(models, x, {"code_noise": torch.randn(64, cfg.z_dim)})
        mean = ali.code(models, x, {"code_noise": torch.zeros(64, cfg.z_dim)})
        hidden = models.encoder[:-1](x)
        std = models.extra["log_std"](hidden).exp()
    assert not torch.equal(draw, second)
    encode = get_method("ali").encode
    assert torch.equal(encode(models, x), encode(models, x))      # deterministic
    assert torch.allclose(mean, encode(models, x))                # the draw's mean
    assert torch.allclose(draw, encode(models, x) + std * eps)    # mu + sigma * eps
    # reparameterised: the draw's gradient reaches the encoder and the log-std head
    ali.code(models, x, {"code_noise": eps}).sum().backward()
    assert models.extra["log_std"][-1].weight.grad.abs().sum() > 0
    assert models.encoder[0].weight.grad.abs().sum() > 0
    # over many draws of eps the codes average to encode(x)
    with torch.no_grad():
        many = torch.stack([ali.code(models, x[:4], {"code_noise": torch.randn(4, cfg.z_dim)})
                            for _ in range(4000)])
    assert torch.allclose(many.mean(0), encode(models, x[:4]), atol=5 * std.max().item() / 60)


def test_the_extra_modules_have_their_documented_sizes_at_width_1():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    models = ali.build(make_config("quick", method="ali", width=1.0))
    assert count(models.extra["z_path"]) == 5 * 512 + 512
    assert count(models.extra["log_std"]) == 128 * 5 + 5
    models = alpha_gan.build(make_config("quick", method="alpha_gan", width=1.0))
    critic = build_networks("mixture", 1.0, 5).critic
    assert count(models.extra["code_critic"]) == count(critic) + 3 * 512  # z is 5-d, x 2-d


@pytest.mark.parametrize("method", ["iwgan", "wgan_gp", "gan", "ali", "bigan", "alpha_gan"])
def test_the_encoder_option_is_gone_the_method_name_says_which_encoder(method):
    with pytest.raises(ValueError, match=rf"method '{method}' has no option 'encoder'"):
        make_config("tiny", method=method, options={"encoder": "stochastic"})


@pytest.mark.parametrize(("method", "options", "named"), [
    ("alpha_gan", {"lambda_rec": -1.0}, "'lambda_rec'"),
    ("alpha_gan", {"adversarial_loss": "hinge"}, "'adversarial_loss'"),
])
def test_a_bad_option_value_names_the_method_and_the_option(method, options, named):
    with pytest.raises(ValueError, match=rf"method '{method}' option {named}"):
        make_config("tiny", method=method, options=options)
