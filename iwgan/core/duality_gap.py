"""The duality gap of eq. (4) and Algorithm 1's stopping rule.

eq. (4), estimated as Grnarova et al. (2018) do, for the objective V the method names as
its DUALITY_GAP (iwgan.core.methods.GapValue): iWGAN's L(G, Q, f) = E||x - G(Q(x))|| +
E f(G(Q(x))) - E f(G(z)) (iwgan.core.iwgan.objective_L), which every method with an
encoder is measured by unless it declares another, or WGAN-GP's V(G, f) = E f(x) -
E f(G(z)) (iwgan.core.losses.wgan_value, Grnarova et al.'s WGAN gap). With ``real_side``
the points f is to score above G(z) in V (G~(Q~(x)) for L, x for the WGAN value):

    sup step: ``steps`` Adam steps on a deep copy of f maximising
              V(G~, Q~, f) - lambda_gp * GP(f), the penalty on points between the real
              side and G~(z), the two sets f separates in V;
    inf step: ``steps`` Adam steps on deep copies of (G, Q) minimising V(G, Q, f~);
    gap = V(G~, Q~, f_sup) - V(G_inf, Q_inf, f~),

both values on a held-out evaluation set the steps never saw. ALI, BiGAN and alpha-GAN
have a logit discriminator, not a 1-Lipschitz critic, as their f~: their eq. (4) values
use it as it is.

Algorithm 1 stops when DualGap < eps_1 and L < eps_2 (:func:`stop_rule_met`).
"""

from __future__ import annotations

import copy

import torch

from iwgan.core.losses import gradient_penalty, wgan_value
from iwgan.core.methods import DRAWS, GapValue, Models, adam, descend, get_method


def _copy(module, trainable: bool):
    twin = copy.deepcopy(module)
    twin.requires_grad_(trainable)
    return twin


def _minimise(modules, cfg, steps: int, loss_of_batch) -> None:
    """``steps`` Adam steps on ``modules``' parameters, each on ``loss_of_batch()``."""
    params = [p for m in modules for p in m.parameters()]
    opt = adam(params, cfg)
    for _ in range(steps):
        descend(opt, loss_of_batch(), params)


def duality_gap(models: Models, cfg, sample_real, generator: torch.Generator, steps: int,
                n_eval: int = 1_000) -> dict:
    """The duality gap of ``models`` at their current parameters, of the objective their
    method names (:func:`gap_value`). Draws the held-out set, then ``steps`` batches
    (and penalty weights) for the sup copy, then ``steps`` batches for the inf copy, all
    from ``generator`` (CPU); ``sample_real(n, generator)`` draws real points. Only ever
    optimises copies: ``models`` are unchanged."""
    if steps <= 0:
        raise ValueError(f"gap_steps must be a positive integer, got {steps}")
    method = get_method(cfg.method)
    has_encoder, gap = method.has_encoder, gap_value(method)
    device = models.device
    frozen = Models(generator=_copy(models.generator, False), critic=_copy(models.critic, False),
                    encoder=_copy(models.encoder, False) if has_encoder else None)

    def draw(n):
        return (sample_real(n, generator).to(device),
                torch.randn(n, cfg.z_dim, generator=generator).to(device))

    x_eval, z_eval = draw(n_eval)
    # sup over f, (G, Q) fixed
    sup = Models(generator=frozen.generator, critic=_copy(models.critic, True),
                 encoder=frozen.encoder)

    def sup_loss():
        x, z = draw(cfg.batch_size)
        with torch.no_grad():
            first = gap.real_side(frozen, x)
            fake = frozen.generator(z)
        eps = DRAWS["gp_eps"](len(x), x.shape[1:], cfg.z_dim, generator, "cpu").to(device)
        gp = gradient_penalty(sup.critic, first, fake, eps)
        return -(sup.critic(first).mean() - sup.critic(fake).mean()) + cfg.lambda_gp * gp

    _minimise([sup.critic], cfg, steps, sup_loss)
    # inf over (G, Q), f fixed
    inf = Models(generator=_copy(models.generator, True), critic=frozen.critic,
                 encoder=_copy(models.encoder, True) if has_encoder else None)
    _minimise([inf.generator, inf.encoder] if has_encoder else [inf.generator], cfg, steps,
              lambda: gap.value(inf, *draw(cfg.batch_size)))
    with torch.no_grad():
        sup_value = float(gap.value(sup, x_eval, z_eval))
        inf_value = float(gap.value(inf, x_eval, z_eval))
        current = float(gap.value(frozen, x_eval, z_eval))
        out = {"dual_gap": sup_value - inf_value, "dual_gap_sup": sup_value,
               "dual_gap_inf": inf_value, "objective_heldout": current,
               "gap_cheap_heldout": float("nan"), "recon_error": float("nan")}
        if has_encoder:
            recon = (x_eval - frozen.generator(frozen.encoder(x_eval))).flatten(1).norm(dim=1)
            out["recon_error"] = float(recon.mean())
            out["gap_cheap_heldout"] = float(recon.mean()
                                             - wgan_value(frozen, x_eval, z_eval))
    return out


def gap_value(method) -> GapValue:
    """The objective whose duality gap is measured for ``method``; one line says why a
    method has none."""
    gap = method.duality_gap
    if gap is None:
        raise ValueError(f"method {method.name!r} has no duality gap: it has no encoder and "
                         "declares no DUALITY_GAP (the objective eq. (4) measures, "
                         "iwgan.core.methods.GapValue); declare one to run it in the "
                         "convergence experiment")
    return gap


def stop_rule_met(window: dict, cfg) -> bool:
    """Algorithm 1 stops when DualGap < eps_1 and L < eps_2. Both batch estimates are noisy
    and can be negative, so the rule is checked on the magnitudes of their means over the
    last ``stop_window`` iterations, once the window is full."""
    if len(window["dual_gap"]) < cfg.stop_window:
        return False
    gap = abs(sum(window["dual_gap"]) / len(window["dual_gap"]))
    loss = abs(sum(window["objective_L"]) / len(window["objective_L"]))
    return gap < cfg.stop_gap and loss < cfg.stop_loss
