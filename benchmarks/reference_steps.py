"""Minimal reference training steps, written as plainly as PyTorch allows: raw
nn.Sequential MLPs, torch.optim.Adam, every loss inline, nothing from the suite. They are
the floor the suite's step is measured against (benchmarks/test_bench_steps.py): the
suite's overhead is its time over these for the same method, networks and batch size.

Each step computes what the suite's step computes and logs (tests/test_reference_steps.py
checks that, from the same weights and batch), without redundancy: a value needed twice
is computed once. The backward passes reach only the stepped optimiser's parameters
(``backward(inputs=...)``), the minimal computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def mlp(*sizes):
    layers = []
    for i in range(len(sizes) - 1):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
    return nn.Sequential(*layers)


def mixture_nets(width=1.0, z_dim=5):
    """Appendix D1's MLPs, hidden sizes times ``width`` (built in the suite's order)."""
    def w(*h):
        return [max(1, round(x * width)) for x in h]
    return {"encoder": mlp(2, *w(1024, 512, 256, 128), z_dim),
            "generator": mlp(z_dim, *w(512, 512, 512), 2),
            "critic": mlp(2, *w(512, 512, 512), 1)}


def adam(params, lr, betas):
    return torch.optim.Adam(list(params), lr=lr, betas=betas)


def step(opt, loss):
    opt.zero_grad(set_to_none=True)
    loss.backward(inputs=[p for g in opt.param_groups for p in g["params"]])
    opt.step()


def gradient_penalty(critic, real, fake):
    eps = torch.rand(real.shape[0], 1, device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.norm(dim=1) - 1) ** 2).mean()


def mmd_imq(x, y):
    n, dim = x.shape
    d_xx, d_yy, d_xy = (torch.cdist(a, b).pow(2) for a, b in ((x, x), (y, y), (x, y)))
    total = 0
    for scale in IMQ_SCALES:
        c = 2 * dim * scale
        total = (total + ((c / (c + d_xx)).sum() - n) / (n * (n - 1))
                 + ((c / (c + d_yy)).sum() - n) / (n * (n - 1)) - 2 * (c / (c + d_xy)).mean())
    return total


# --- iWGAN ---------------------------------------------------------------------------------

def iwgan_build(nets, lr=1e-4, betas=(0.5, 0.9)):
    return {"critic": adam(nets["critic"].parameters(), lr, betas),
            "generator": adam([*nets["generator"].parameters(),
                               *nets["encoder"].parameters()], lr, betas)}


def iwgan_critic_step(nets, opts, x, z, lambda_gp=5.0):
    Q, G, f = nets["encoder"], nets["generator"], nets["critic"]
    with torch.no_grad():
        fake, recon = G(z), G(Q(x))
    gp = gradient_penalty(f, x, fake)
    loss = f(fake).mean() - f(recon).mean() + lambda_gp * gp
    step(opts["critic"], loss)
    return {"critic_loss": loss.detach(), "gradient_penalty": gp.detach()}


def iwgan_generator_step(nets, opts, x, z, lambda_mmd=10.0):
    Q, G, f = nets["encoder"], nets["generator"], nets["critic"]
    code = Q(x)
    recon = G(code)
    f_fake = f(G(z)).mean()
    reconstruction = (x - recon).norm(dim=1).mean()
    objective = reconstruction + f(recon).mean() - f_fake
    mmd = mmd_imq(code, z)
    step(opts["generator"], objective + lambda_mmd * mmd)
    with torch.no_grad():
        dual = f(x).mean() - f_fake
    return {"objective_L": objective.detach(), "reconstruction": reconstruction.detach(),
            "mmd": mmd.detach(), "dual_gap": reconstruction.detach() - dual}


# --- WGAN-GP -------------------------------------------------------------------------------

def wgan_gp_build(nets, lr=1e-4, betas=(0.5, 0.9)):
    return {"critic": adam(nets["critic"].parameters(), lr, betas),
            "generator": adam(nets["generator"].parameters(), lr, betas)}


def wgan_gp_critic_step(nets, opts, x, z, lambda_gp=5.0):
    G, f = nets["generator"], nets["critic"]
    with torch.no_grad():
        fake = G(z)
    gp = gradient_penalty(f, x, fake)
    w = f(x).mean() - f(fake).mean()
    loss = -w + lambda_gp * gp
    step(opts["critic"], loss)
    return {"critic_loss": loss.detach(), "gradient_penalty": gp.detach(),
            "w_estimate": w.detach()}


def wgan_gp_generator_step(nets, opts, x, z):
    loss = -nets["critic"](nets["generator"](z)).mean()
    step(opts["generator"], loss)
    return {"generator_loss": loss.detach()}


# --- the GAN (non-saturating) -----------------------------------------------------------------

def gan_build(nets, lr=1e-4, betas=(0.5, 0.9)):
    return {"critic": adam(nets["critic"].parameters(), lr, betas),
            "generator": adam(nets["generator"].parameters(), lr, betas)}


def gan_critic_step(nets, opts, x, z):
    with torch.no_grad():
        fake = nets["generator"](z)
    d_real, d_fake = nets["critic"](x), nets["critic"](fake)
    loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    step(opts["critic"], loss)
    return {"discriminator_loss": loss.detach(), "d_real": torch.sigmoid(d_real).mean().detach(),
            "d_fake": torch.sigmoid(d_fake).mean().detach()}


def gan_generator_step(nets, opts, x, z):
    loss = F.softplus(-nets["critic"](nets["generator"](z))).mean()
    step(opts["generator"], loss)
    return {"generator_loss": loss.detach()}


# --- BiGAN (deterministic encoder) and ALI (reparameterised Gaussian encoder) ----------------

def bigan_build(nets, lr=1e-4, betas=(0.5, 0.9), z_dim=5, stochastic=False):
    nets["z_path"] = mlp(z_dim, nets["critic"][0].out_features)
    if stochastic:   # ALI: a log-std head on the encoder's last hidden layer
        nets["log_std"] = mlp(nets["encoder"][-1].in_features, z_dim)
    return {"critic": adam([*nets["critic"].parameters(), *nets["z_path"].parameters()],
                           lr, betas),
            "generator": adam([*nets["generator"].parameters(),
                               *nets["encoder"].parameters(),
                               *(nets["log_std"].parameters() if stochastic else ())],
                              lr, betas)}


def ali_build(nets, lr=1e-4, betas=(0.5, 0.9), z_dim=5):
    return bigan_build(nets, lr, betas, z_dim, stochastic=True)


def ali_d(nets, x, z):
    return nets["critic"][1:](nets["critic"][0](x) + nets["z_path"](z))


def code(nets, x):
    """Q(x): the encoder's output, or with a log-std head a draw mu + sigma * eps (eps drawn
    here, after the batch, as the trainer draws it)."""
    if "log_std" not in nets:
        return nets["encoder"](x)
    hidden = nets["encoder"][:-1](x)
    eps = torch.randn(x.shape[0], nets["log_std"][-1].out_features, device=x.device)
    return nets["encoder"][-1](hidden) + nets["log_std"](hidden).exp() * eps


def ali_critic_step(nets, opts, x, z):
    with torch.no_grad():
        fake, q = nets["generator"](z), code(nets, x)
    d_real, d_fake = ali_d(nets, x, q), ali_d(nets, fake, z)
    loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    step(opts["critic"], loss)
    return {"discriminator_loss": loss.detach(), "d_real": torch.sigmoid(d_real).mean().detach(),
            "d_fake": torch.sigmoid(d_fake).mean().detach()}


def ali_generator_step(nets, opts, x, z):
    d_real = ali_d(nets, x, code(nets, x))
    d_fake = ali_d(nets, nets["generator"](z), z)
    loss = F.softplus(d_real).mean() + F.softplus(-d_fake).mean()
    step(opts["generator"], loss)
    return {"generator_loss": loss.detach()}


# --- alpha-GAN (density-ratio adversarial loss, lambda_rec = 1) ------------------------------

def alpha_gan_build(nets, lr=1e-4, betas=(0.5, 0.9), z_dim=5, width=1.0):
    h = [max(1, round(x * width)) for x in (512, 512, 512)]
    nets["code_critic"] = mlp(z_dim, *h, 1)
    return {"critic": adam([*nets["critic"].parameters(), *nets["code_critic"].parameters()],
                           lr, betas),
            "generator": adam([*nets["generator"].parameters(),
                               *nets["encoder"].parameters()], lr, betas)}


def alpha_gan_critic_step(nets, opts, x, z):
    Q, G, D, C = nets["encoder"], nets["generator"], nets["critic"], nets["code_critic"]
    with torch.no_grad():
        code = Q(x)
        recon, fake = G(code), G(z)
    d_loss = F.softplus(-D(x)).mean() + F.softplus(D(recon)).mean() + F.softplus(D(fake)).mean()
    c_loss = F.softplus(-C(z)).mean() + F.softplus(C(code)).mean()
    step(opts["critic"], d_loss + c_loss)
    return {"discriminator_loss": d_loss.detach(), "code_discriminator_loss": c_loss.detach()}


def alpha_gan_generator_step(nets, opts, x, z, lambda_rec=1.0):
    Q, G, D, C = nets["encoder"], nets["generator"], nets["critic"], nets["code_critic"]
    code = Q(x)
    reconstruction = (x - G(code)).abs().sum(dim=1).mean()
    rec_term = lambda_rec * reconstruction
    # G(code.detach()): Q gets no gradient from D (Algorithm 1), so this pass is needed.
    g_adv = -D(G(code.detach())).mean() - D(G(z)).mean()
    q_adv = -C(code).mean()
    step(opts["generator"], rec_term + g_adv + q_adv)
    return {"reconstruction": reconstruction.detach(),
            "generator_loss": (rec_term + g_adv).detach(),
            "encoder_loss": (rec_term + q_adv).detach()}


# --- registry and a plain training loop --------------------------------------------------------

# method -> (build, critic step, generator step, schedule(n_critic) -> (critic, generator))
METHODS = {
    "iwgan": (iwgan_build, iwgan_critic_step, iwgan_generator_step, lambda n: (n, n)),
    "wgan_gp": (wgan_gp_build, wgan_gp_critic_step, wgan_gp_generator_step, lambda n: (n, 1)),
    "gan": (gan_build, gan_critic_step, gan_generator_step, lambda n: (1, 1)),
    "ali": (ali_build, ali_critic_step, ali_generator_step, lambda n: (1, 1)),
    "bigan": (bigan_build, ali_critic_step, ali_generator_step, lambda n: (1, 1)),
    "alpha_gan": (alpha_gan_build, alpha_gan_critic_step, alpha_gan_generator_step,
                  lambda n: (1, 1)),
}


def build(method, width, lr, betas, z_dim=5):
    """Networks and optimisers, built in the suite's order so a seed gives its weights."""
    nets = mixture_nets(width, z_dim)
    make = METHODS[method][0]
    kwargs = {"z_dim": z_dim} if method in ("ali", "bigan") else (
        {"z_dim": z_dim, "width": width} if method == "alpha_gan" else {})
    return nets, make(nets, lr, betas, **kwargs)


def train(method, centres, std, iterations, batch_size=64, width=0.25, lr=1e-3,
          betas=(0.5, 0.9), n_critic=2, z_dim=5, seed=0, log_every=50, device="cpu"):
    """A plain loop: seed, build, then per iteration the method's steps on fresh batches
    (x from the mixture, z ~ N(0, I)); logs read (one sync) every ``log_every``."""
    torch.manual_seed(seed)
    nets, opts = build(method, width, lr, betas, z_dim)
    for net in nets.values():
        net.to(device)
    _, critic_step, generator_step, schedule = METHODS[method]
    n_c, n_g = schedule(n_critic)
    centres = torch.as_tensor(centres, dtype=torch.float32)
    history = []
    for it in range(1, iterations + 1):
        for fn, count in ((critic_step, n_c), (generator_step, n_g)):
            for _ in range(count):
                x = centres[torch.randint(len(centres), (batch_size,))]
                x = (x + std * torch.randn(batch_size, 2)).to(device)
                logs = fn(nets, opts, x, torch.randn(batch_size, z_dim, device=device))
        if it % log_every == 0 or it == iterations:
            history.append({k: v.item() for k, v in logs.items()})
    return nets, history
