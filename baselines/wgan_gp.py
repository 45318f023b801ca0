"""WGAN-GP (Gulrajani et al. 2017) on the shared generator and critic; no encoder.

Per outer iteration, ``n_critic`` critic steps then one generator step (the original
algorithm's 5:1 schedule), Adam with the same settings as iWGAN.

    critic:    minimise  f(G(z)) - f(x) + lambda_gp * GP(f; x, G(z))
    generator: minimise  -f(G(z))

Logged ``w_estimate`` = mean f(x) - f(G(z)) (:func:`wgan_value`, the WGAN objective (2))
is the critic's estimate of W1.
(``wgan_value`` lives with the shared loss terms: the duality gap's cheap estimate
uses it for every method.)
"""

from __future__ import annotations

import torch

from iwgan.core.losses import gradient_penalty, wgan_value
from iwgan.core.methods import GapValue, Models, Phase
from iwgan.core.networks import build_networks

HAS_ENCODER = False
IMAGES = True
USES = ("n_critic",)
OPTIONS: dict = {}
LOGS = ("critic_loss", "gradient_penalty", "w_estimate", "generator_loss")


def build(cfg) -> Models:
    nets = build_networks(cfg.arch, cfg.width, cfg.z_dim)
    return Models(generator=nets.generator, critic=nets.critic,
                  optimized={"critic": ("critic",), "generator": ("generator",)})


def phases(cfg):
    return [Phase(critic_loss, "critic", cfg.n_critic, draws=("gp_eps",)),
            Phase(generator_loss, "generator", 1)]


def real(m: Models, x) -> torch.Tensor:
    """x: the points f scores against G(z) in V."""
    return x


# The duality gap measures V: Grnarova et al.'s WGAN gap (iwgan.core.duality_gap).
DUALITY_GAP = GapValue("wgan", wgan_value, real)


def critic_loss(m: Models, x, z, cfg, noise):
    with torch.no_grad():
        fake = m.generator(z)
    gp = gradient_penalty(m.critic, x, fake, noise["gp_eps"])
    w_estimate = wgan_value(m, x, z, fake)
    loss = -w_estimate + cfg.lambda_gp * gp
    return loss, {"critic_loss": loss, "gradient_penalty": gp, "w_estimate": w_estimate}


def generator_loss(m: Models, x, z, cfg, noise):
    loss = -m.critic(m.generator(z)).mean()
    return loss, {"generator_loss": loss}
