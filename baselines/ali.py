"""ALI (Dumoulin et al. 2016) on the shared Q, G and critic; BiGAN (Donahue et al. 2016,
baselines/bigan.py) is this very method with a deterministic encoder.

Per outer iteration, one discriminator step then one G/Q step (the original algorithms'
1:1 schedule; it reads no ``n_critic``: USES is empty, so an override of it leaves
ALI's runs as they are), Adam with the same settings as iWGAN. D(x, z) is
a logit; with sp(t) = log(1 + e^t) = -log sigmoid(-t), the non-saturating GAN loss:

    discriminator: minimise  sp(-D(x, Q(x))) + sp(D(G(z), z))
    G and Q:       minimise  sp(D(x, Q(x))) + sp(-D(G(z), z))     (labels swapped)

D(x, z) = critic[1:](critic[0](x) + z_path(z)): the shared critic whose first layer also
reads z, i.e. exactly the critic's MLP on the concatenation (x, z). The x-path is the
critic's first layer, the z-path is one linear map z -> the critic's first hidden layer
(extra ``z_path``), and the joint layers are the rest of the critic, so the only
addition is z_path. Using the critic's scalar output as the x-path would squeeze x to one
number before it meets z; using its penultimate features would leave its last layer unused
and need joint layers of its own.

ALI's encoder is stochastic: Q(x) = mu(x) + exp(s(x)) * eps, eps ~ N(0, I), reparameterised,
where mu is the shared encoder and s = log-std is one extra linear head (extra
``log_std``) on the shared encoder's last hidden layer, as if that encoder's output layer
were widened to 2 * z_dim. ``encode`` returns mu(x), the posterior mean. BiGAN codes x as
mu(x) itself: :func:`models` and :func:`phases_of` with ``stochastic=False``, no
``log_std`` and no draw; the losses are the same functions (:func:`code` reads which
encoder the models have). ALI has no option: the encoder is which method one names.

Logged ``d_real`` = mean sigmoid(D(x, Q(x))) and ``d_fake`` = mean sigmoid(D(G(z), z)):
the discriminator's probability that a pair is an encoder pair (both 1/2 at equilibrium).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from iwgan.core.methods import Models, Phase
from iwgan.core.networks import build_networks, mlp

HAS_ENCODER = True
IMAGES = True
OPTIONS: dict = {}
LOGS = ("discriminator_loss", "d_real", "d_fake", "generator_loss")


def models(cfg, stochastic: bool) -> Models:
    """The shared networks, ``z_path`` and, for a stochastic encoder, ``log_std``."""
    nets = build_networks(cfg.arch, cfg.width, cfg.z_dim)
    z_path = mlp((cfg.z_dim, nets.critic[0].weight.shape[0]))
    log_std = ({"log_std": mlp((nets.encoder[-1].weight.shape[1], cfg.z_dim))}
               if stochastic else {})
    return Models(generator=nets.generator, critic=nets.critic, encoder=nets.encoder,
                  extra={"z_path": z_path, **log_std},
                  optimized={"critic": ("critic", "z_path"),
                             "generator": ("generator", "encoder", *log_std)})


def phases_of(stochastic: bool) -> list[Phase]:
    """One discriminator step, then one G/Q step; a stochastic encoder draws its noise."""
    draws = ("code_noise",) if stochastic else ()
    return [Phase(critic_loss, "critic", 1, draws), Phase(generator_loss, "generator", 1, draws)]


def build(cfg) -> Models:
    return models(cfg, stochastic=True)


def phases(cfg):
    return phases_of(stochastic=True)


def discriminator(m: Models, x, z):
    """D(x, z): z's projection joins x's at the critic's first hidden pre-activation."""
    h = m.critic[0](x)
    zh = m.extra["z_path"](z)
    return m.critic[1:](h + zh.view(*zh.shape, *[1] * (h.dim() - zh.dim())))


def code(m: Models, x, noise):
    """Q(x) as the discriminator sees it: the code, or a reparameterised draw around it."""
    if "log_std" not in m.extra:
        return m.encoder(x)
    hidden = m.encoder[:-1](x)
    mean = m.encoder[-1](hidden)
    return mean + m.extra["log_std"](hidden).exp() * noise["code_noise"]


def critic_loss(m: Models, x, z, cfg, noise):
    with torch.no_grad():
        fake = m.generator(z)
        x_code = code(m, x, noise)
    d_real, d_fake = discriminator(m, x, x_code), discriminator(m, fake, z)
    loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    return loss, {"discriminator_loss": loss, "d_real": torch.sigmoid(d_real).mean(),
                  "d_fake": torch.sigmoid(d_fake).mean()}


def generator_loss(m: Models, x, z, cfg, noise):
    d_real, d_fake = discriminator(m, x, code(m, x, noise)), discriminator(m, m.generator(z), z)
    loss = F.softplus(d_real).mean() + F.softplus(-d_fake).mean()
    return loss, {"generator_loss": loss}
