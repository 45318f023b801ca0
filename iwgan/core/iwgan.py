"""iWGAN, Algorithm 1 of the paper: a primal-dual autoencoder WGAN.

Per outer iteration, ``n_critic`` critic steps then ``n_critic`` G/Q steps, Adam for both.

    critic:  minimise  f(G(z)) - f(G(Q(x))) + lambda_gp * GP(f; x, G(z))
    G and Q: minimise  ||x - G(Q(x))|| + f(G(Q(x))) - f(G(z)) + lambda_mmd * MMD(Q(x), z)

Option ``reconstruction``: "l2" (default, eq. (3) and the authors' code: the norm, not
squared) or "l2_squared" (||x - G(Q(x))||^2, an ablation: its gradient grows with the
error, where the norm's has length 1 per sample whatever the error; docs/methods/iwgan.md).

``L(G, Q, f) = ||x - G(Q(x))|| + f(G(Q(x))) - f(G(z))`` is the iWGAN objective (3)
(:func:`objective_L`, also the value whose duality gap eq. (4) measures); the cheap
duality-gap estimate logged every iteration is primal - dual on the current batch,
primal = mean ||x - G(Q(x))||, dual = mean f(x) - f(G(z)) (the authors' code's curve).
"""

from __future__ import annotations

import torch

from iwgan.core.losses import gradient_penalty, mmd_imq, reconstruction_error
from iwgan.core.methods import GapValue, Models, Option, Phase
from iwgan.core.networks import build_networks

HAS_ENCODER = True
IMAGES = True
USES = ("n_critic", "lambda_mmd")
OPTIONS = {"reconstruction": Option("l2", choices=("l2", "l2_squared"),
                                    help="the reconstruction term: the norm, or its square")}
LOGS = ("critic_loss", "gradient_penalty", "objective_L", "reconstruction", "mmd", "dual_gap")


def build(cfg) -> Models:
    nets = build_networks(cfg.arch, cfg.width, cfg.z_dim)
    return Models(generator=nets.generator, critic=nets.critic, encoder=nets.encoder,
                  optimized={"critic": ("critic",), "generator": ("generator", "encoder")})


def phases(cfg):
    return [Phase(critic_loss, "critic", cfg.n_critic, draws=("gp_eps",)),
            Phase(generator_loss, "generator", cfg.n_critic)]


def objective_terms(m: Models, x, z, square: bool = False) -> dict:
    """L(G, Q, f) = E||x - G(Q(x))|| + E f(G(Q(x))) - E f(G(z)), eq. (3), as "L", with
    its pieces: Q(x) ("code"), E||x - G(Q(x))|| ("reconstruction") and E f(G(z)).
    ``square``: the reconstruction term squared (the ``l2_squared`` ablation)."""
    code = m.encoder(x)
    recon = m.generator(code)
    error = reconstruction_error(x, recon)
    reconstruction = (error ** 2 if square else error).mean()
    f_fake = m.critic(m.generator(z)).mean()
    return {"L": reconstruction + m.critic(recon).mean() - f_fake, "code": code,
            "reconstruction": reconstruction, "f_fake": f_fake}


def objective_L(m: Models, x, z) -> torch.Tensor:
    """L(G, Q, f), eq. (3)."""
    return objective_terms(m, x, z)["L"]


def reconstructed(m: Models, x) -> torch.Tensor:
    """G(Q(x)): the points f scores against G(z) in L."""
    return m.generator(m.encoder(x))


# The duality gap of eq. (4) measures L (iwgan.core.duality_gap).
DUALITY_GAP = GapValue("eq4", objective_L, reconstructed)


def critic_loss(m: Models, x, z, cfg, noise):
    with torch.no_grad():
        fake = m.generator(z)
        recon = m.generator(m.encoder(x))
    gp = gradient_penalty(m.critic, x, fake, noise["gp_eps"])
    loss = m.critic(fake).mean() - m.critic(recon).mean() + cfg.lambda_gp * gp
    return loss, {"critic_loss": loss, "gradient_penalty": gp}


def generator_loss(m: Models, x, z, cfg, noise):
    t = objective_terms(m, x, z, cfg.method_options["reconstruction"] == "l2_squared")
    mmd = mmd_imq(t["code"], z)
    with torch.no_grad():
        dual = m.critic(x).mean() - t["f_fake"]
    return t["L"] + cfg.lambda_mmd * mmd, {
        "objective_L": t["L"], "reconstruction": t["reconstruction"], "mmd": mmd,
        "dual_gap": t["reconstruction"] - dual}
