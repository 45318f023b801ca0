"""WAE-GAN (Tolstikhin et al. 2018, "Wasserstein Auto-Encoders", Algorithm 2) on the suite's
shared Q and G: an autoencoder whose codes are pushed to the prior by a GAN in the latent
space, where iWGAN pushes them by an MMD penalty and adds a critic on x.

Per outer iteration, one step of the latent discriminator D_z then one Q/G step (1:1, as
Algorithm 2; no ``n_critic``: USES is empty), Adam with the run's settings. D_z is a logit
on codes (extra ``latent_critic``: the critic's MLP on z instead of x, the same widths as
alpha-GAN's code discriminator). With sp(t) = log(1 + e^t), lambda = ``lambda_z`` and
c the ``cost``:

    D_z:    minimise  lambda * (sp(-D_z(z)) + sp(D_z(Q(x))))     z ~ N(0, I): "real" codes
    Q, G:   minimise  c(x, G(Q(x))) + lambda * sp(-D_z(Q(x)))   (non-saturating)

c is ||x - G(Q(x))||^2 (``"l2_squared"``, the paper's) or its square root (``"l2"``,
iWGAN's term). The shared critic on x is built (every method has one) but not trained:
the duality gap of eq. (4), this method's default as for any method with an encoder, then
measures (G, Q) against a critic that training never fitted, and is only indicative.

Logged: ``latent_critic_loss`` (D_z's loss), ``reconstruction`` (mean c),
``latent_adversarial`` (mean sp(-D_z(Q(x)))), ``generator_loss`` (Q and G's loss).
"""

from __future__ import annotations

import torch.nn.functional as F

from iwgan.core.methods import Models, Option, Phase
from iwgan.core.networks import CRITIC_HIDDEN, build_networks, mlp, scaled

HAS_ENCODER = True
IMAGES = True
OPTIONS = {"lambda_z": Option(1.0, minimum=0.0, help="lambda, the latent GAN's weight"),
           "cost": Option("l2_squared", choices=("l2_squared", "l2"),
                          help="c(x, G(Q(x))): the squared L2 norm, or the norm")}
LOGS = ("latent_critic_loss", "reconstruction", "latent_adversarial", "generator_loss")


def build(cfg) -> Models:
    nets = build_networks(cfg.arch, cfg.width, cfg.z_dim)
    latent_critic = mlp((cfg.z_dim, *scaled(CRITIC_HIDDEN, cfg.width), 1))
    return Models(generator=nets.generator, critic=nets.critic, encoder=nets.encoder,
                  extra={"latent_critic": latent_critic},
                  optimized={"critic": ("latent_critic",),
                             "generator": ("generator", "encoder")})


def phases(cfg):
    return [Phase(latent_critic_loss, "critic", 1), Phase(generator_loss, "generator", 1)]


def latent_critic_loss(m: Models, x, z, cfg, noise):
    codes = m.encoder(x).detach()
    d = m.extra["latent_critic"]
    loss = cfg.method_options["lambda_z"] * (F.softplus(-d(z)).mean()
                                             + F.softplus(d(codes)).mean())
    return loss, {"latent_critic_loss": loss}


def generator_loss(m: Models, x, z, cfg, noise):
    options = cfg.method_options
    codes = m.encoder(x)
    squared = (x - m.generator(codes)).flatten(1).pow(2).sum(dim=1)
    cost = squared if options["cost"] == "l2_squared" else squared.sqrt()
    adversarial = F.softplus(-m.extra["latent_critic"](codes)).mean()
    loss = cost.mean() + options["lambda_z"] * adversarial
    return loss, {"reconstruction": cost.mean(), "latent_adversarial": adversarial,
                  "generator_loss": loss}
