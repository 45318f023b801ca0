"""iWGAN, Algorithm 1 of the paper: a primal-dual autoencoder WGAN.

Per outer iteration, ``n_critic`` critic steps then ``n_critic`` G/Q steps, Adam for both.

    critic:  minimise  f(G(z)) - f(G(Q(x))) + lambda_gp * GP(f; x, G(z))
    G and Q: minimise  ||x - G(Q(x))|| + f(G(Q(x))) - f(G(z)) + lambda_mmd * MMD(Q(x), z)

``L(G, Q, f) = ||x - G(Q(x))|| + f(G(Q(x))) - f(G(z))`` is the iWGAN objective (3); the
cheap duality-gap estimate logged every iteration is primal - dual on the current batch,
primal = mean ||x - G(Q(x))||, dual = mean f(x) - f(G(z)) (the authors' code's curve).
"""

from __future__ import annotations

import torch

from iwgan.losses import gradient_penalty, mmd_imq, reconstruction_error
from iwgan.methods import Models, adam, encode, generate, update  # noqa: F401
from iwgan.networks import build_networks

HAS_ENCODER = True
OPTIONS: dict = {}
LOGS = ("critic_loss", "gradient_penalty", "objective_L", "reconstruction", "mmd", "dual_gap")


def build(cfg) -> Models:
    nets = build_networks(cfg.arch, cfg.width, cfg.z_dim)
    return Models(
        generator=nets.generator, critic=nets.critic, encoder=nets.encoder,
        optimizers={"critic": adam([nets.critic], cfg),
                    "generator": adam([nets.generator, nets.encoder], cfg)},
    )


def phases(cfg):
    return [(critic_step, cfg.n_critic), (generator_step, cfg.n_critic)]


def critic_step(m: Models, x, z, cfg) -> dict:
    with torch.no_grad():
        fake = m.generator(z)
        recon = m.generator(m.encoder(x))
    gp = gradient_penalty(m.critic, x, fake)
    loss = m.critic(fake).mean() - m.critic(recon).mean() + cfg.lambda_gp * gp
    update(m.optimizers["critic"], loss)
    return {"critic_loss": loss.detach(), "gradient_penalty": gp.detach()}


def generator_step(m: Models, x, z, cfg) -> dict:
    code = m.encoder(x)
    recon = m.generator(code)
    reconstruction = reconstruction_error(x, recon).mean()
    f_fake = m.critic(m.generator(z)).mean()
    objective = reconstruction + m.critic(recon).mean() - f_fake
    mmd = mmd_imq(code, z)
    update(m.optimizers["generator"], objective + cfg.lambda_mmd * mmd)
    with torch.no_grad():
        # f is not stepped here, so f(G(z)) is still the value above.
        dual = m.critic(x).mean() - f_fake.detach()
    return {"objective_L": objective.detach(), "reconstruction": reconstruction.detach(),
            "mmd": mmd.detach(), "dual_gap": reconstruction.detach() - dual}

