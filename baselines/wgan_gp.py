"""WGAN-GP (Gulrajani et al. 2017) on the shared generator and critic; no encoder.

Per outer iteration, ``n_critic`` critic steps then one generator step (the original
algorithm's 5:1 schedule), Adam with the same settings as iWGAN.

    critic:    minimise  f(G(z)) - f(x) + lambda_gp * GP(f; x, G(z))
    generator: minimise  -f(G(z))

Logged ``w_estimate`` = mean f(x) - f(G(z)) is the critic's estimate of W1.
"""

from __future__ import annotations

import torch

from iwgan.losses import gradient_penalty
from iwgan.methods import Models, adam, generate, update  # noqa: F401
from iwgan.networks import build_networks

HAS_ENCODER = False
OPTIONS: dict = {}
LOGS = ("critic_loss", "gradient_penalty", "w_estimate", "generator_loss")


def build(cfg) -> Models:
    nets = build_networks(cfg.arch, cfg.width, cfg.z_dim)
    return Models(
        generator=nets.generator, critic=nets.critic,
        optimizers={"critic": adam([nets.critic], cfg),
                    "generator": adam([nets.generator], cfg)},
    )


def phases(cfg):
    return [(critic_step, cfg.n_critic), (generator_step, 1)]


def critic_step(m: Models, x, z, cfg) -> dict:
    with torch.no_grad():
        fake = m.generator(z)
    gp = gradient_penalty(m.critic, x, fake)
    w_estimate = m.critic(x).mean() - m.critic(fake).mean()
    loss = -w_estimate + cfg.lambda_gp * gp
    update(m.optimizers["critic"], loss)
    return {"critic_loss": loss.detach(), "gradient_penalty": gp.detach(),
            "w_estimate": w_estimate.detach()}


def generator_step(m: Models, x, z, cfg) -> dict:
    loss = -m.critic(m.generator(z)).mean()
    update(m.optimizers["generator"], loss)
    return {"generator_loss": loss.detach()}


def encode(m: Models, x):
    raise ValueError("method 'wgan_gp' has no encoder: it cannot encode, reconstruct or "
                     "score samples; choose iwgan, ali or alpha_gan")
