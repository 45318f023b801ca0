"""alpha-GAN (Rosca et al. 2017, Algorithm 1) on the shared Q, G and critic.

Per outer iteration, one step of both discriminators then one G/Q step (Algorithm 1
updates every network once per iteration; it reads no ``n_critic``: USES is empty, so
an override of it leaves alpha-GAN's runs as they are), Adam with the same
settings as iWGAN. D is the shared critic read as a logit; C is the code discriminator
(extra ``code_critic``: the critic's MLP on z instead of x, z -> 512 -> 512 -> 512 -> 1
at width 1). With sp(t) = log(1 + e^t), lambda = ``lambda_rec`` and adv(t) the
generator-side adversarial loss of a logit t:

    D and C: minimise  sp(-D(x)) + sp(D(G(Q(x)))) + sp(D(G(z)))  +  sp(-C(z)) + sp(C(Q(x)))
    G:       minimise  lambda * ||x - G(Q(x))||_1 + adv(D(G(Q(x)))) + adv(D(G(z)))
    Q:       minimise  lambda * ||x - G(Q(x))||_1 + adv(C(Q(x)))

adv(t) = -t = -log(D / (1 - D)), the density-ratio form of Algorithm 1 (default
``adversarial_loss="density_ratio"``), or adv(t) = sp(-t) = -log D, the non-saturating
loss (``"non_saturating"``). Q gets no gradient from D, nor G from C, as in Algorithm 1.
Note the L1 reconstruction, where iWGAN uses the (unsquared) L2 norm.

D and C are stepped by one Adam on the sum of their losses: the two share no parameters,
so that is two independent Adam steps; likewise G and Q.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from iwgan.core.methods import Models, Option, Phase
from iwgan.core.networks import CRITIC_HIDDEN, build_networks, mlp, scaled

HAS_ENCODER = True
IMAGES = True
OPTIONS = {"lambda_rec": Option(1.0, minimum=0.0, help="lambda, the reconstruction weight"),
           "adversarial_loss": Option("density_ratio",
                                      choices=("density_ratio", "non_saturating"),
                                      help="adv(t): -t, or sp(-t)")}
LOGS = ("discriminator_loss", "code_discriminator_loss", "reconstruction", "generator_loss",
        "encoder_loss")


def build(cfg) -> Models:
    nets = build_networks(cfg.arch, cfg.width, cfg.z_dim)
    code_critic = mlp((cfg.z_dim, *scaled(CRITIC_HIDDEN, cfg.width), 1))
    return Models(generator=nets.generator, critic=nets.critic, encoder=nets.encoder,
                  extra={"code_critic": code_critic},
                  optimized={"critic": ("critic", "code_critic"),
                             "generator": ("generator", "encoder")})


def phases(cfg):
    return [Phase(critic_loss, "critic", 1), Phase(generator_loss, "generator", 1)]


def adversarial(logits, kind: str):
    """The G/Q-side loss of a discriminator logit, batch mean."""
    return -logits.mean() if kind == "density_ratio" else F.softplus(-logits).mean()


def critic_loss(m: Models, x, z, cfg, noise):
    with torch.no_grad():
        code = m.encoder(x)
        recon = m.generator(code)
        fake = m.generator(z)
    d_loss = (F.softplus(-m.critic(x)).mean() + F.softplus(m.critic(recon)).mean()
              + F.softplus(m.critic(fake)).mean())
    c_loss = (F.softplus(-m.extra["code_critic"](z)).mean()
              + F.softplus(m.extra["code_critic"](code)).mean())
    return d_loss + c_loss, {"discriminator_loss": d_loss, "code_discriminator_loss": c_loss}


def generator_loss(m: Models, x, z, cfg, noise):
    options = cfg.method_options
    kind = options["adversarial_loss"]
    code = m.encoder(x)
    reconstruction = (x - m.generator(code)).flatten(1).abs().sum(dim=1).mean()
    rec_term = options["lambda_rec"] * reconstruction
    g_adv = (adversarial(m.critic(m.generator(code.detach())), kind)
             + adversarial(m.critic(m.generator(z)), kind))
    q_adv = adversarial(m.extra["code_critic"](code), kind)
    return rec_term + g_adv + q_adv, {"reconstruction": reconstruction,
                                      "generator_loss": rec_term + g_adv,
                                      "encoder_loss": rec_term + q_adv}
