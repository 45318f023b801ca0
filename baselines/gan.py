"""The vanilla GAN (Goodfellow et al. 2014), non-saturating generator loss, on the shared
generator and critic; no encoder.

The critic's output is read as the discriminator's logit D(x). Per outer iteration, one
discriminator step then one generator step (the original algorithm with k = 1; it reads
no ``n_critic``: USES is empty, so an override of it leaves the runs as they are), Adam
with the same settings as iWGAN. With sp(t) = log(1 + e^t) = -log sigmoid(-t):

    discriminator: minimise  sp(-D(x)) + sp(D(G(z)))     (= -log D - log(1 - D(G(z))))
    generator:     minimise  sp(-D(G(z)))                 (= -log D(G(z)), non-saturating)

Logged ``d_real`` = mean sigmoid(D(x)) and ``d_fake`` = mean sigmoid(D(G(z))): the
discriminator's probability that a point is data (both 1/2 at equilibrium). A logit of 0
everywhere gives discriminator_loss = 2 log 2 and generator_loss = log 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from baselines import wgan_gp
from iwgan.core.methods import Models, Phase

HAS_ENCODER = False
IMAGES = True
OPTIONS: dict = {}
LOGS = ("discriminator_loss", "d_real", "d_fake", "generator_loss")
# WGAN-GP's very models: the shared generator and critic, one optimiser each; the two
# methods differ in their losses and schedule alone.
build = wgan_gp.build


def phases(cfg):
    return [Phase(critic_loss, "critic", 1), Phase(generator_loss, "generator", 1)]


def critic_loss(m: Models, x, z, cfg, noise):
    with torch.no_grad():
        fake = m.generator(z)
    d_real, d_fake = m.critic(x), m.critic(fake)
    loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    return loss, {"discriminator_loss": loss, "d_real": torch.sigmoid(d_real).mean(),
                  "d_fake": torch.sigmoid(d_fake).mean()}


def generator_loss(m: Models, x, z, cfg, noise):
    loss = F.softplus(-m.critic(m.generator(z))).mean()
    return loss, {"generator_loss": loss}
