"""Loss terms shared by the methods. Each works on any tensor shape: points (N, 2) and
images (N, C, H, W) alike, because everything per sample is flattened from dim 1 on."""

from __future__ import annotations

import torch

IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def reconstruction_error(x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm ||x - G(Q(x))|| (not squared), shape (N,)."""
    return (x - x_rec).flatten(1).norm(dim=1)


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Gulrajani et al. 2017: E[(||grad f(x_hat)||_2 - 1)^2] on x_hat = e*real + (1-e)*fake,
    e ~ U[0, 1] per sample. Differentiable in the critic's parameters."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def mmd_imq(x: torch.Tensor, y: torch.Tensor, scales=IMQ_SCALES, prior_var: float = 1.0):
    """MMD between samples x and y with the inverse multiquadratic kernel
    k(a, b) = C / (C + ||a - b||^2), C = 2 * dim * prior_var * scale, summed over scales,
    as in the Wasserstein auto-encoder code: unbiased (off-diagonal) means within x and
    within y, minus twice the full cross mean. Algorithm 1's penalty, line 14."""
    x, y = x.flatten(1), y.flatten(1)
    n, m, dim = x.shape[0], y.shape[0], x.shape[1]
    d_xx = torch.cdist(x, x).pow(2)
    d_yy = torch.cdist(y, y).pow(2)
    d_xy = torch.cdist(x, y).pow(2)
    total = x.new_zeros(())
    for scale in scales:
        c = 2 * dim * prior_var * scale
        # k(a, a) = 1 on the diagonal, so the off-diagonal sum is the full sum minus n.
        within_x = ((c / (c + d_xx)).sum() - n) / (n * (n - 1))
        within_y = ((c / (c + d_yy)).sum() - m) / (m * (m - 1))
        total = total + within_x + within_y - 2 * (c / (c + d_xy)).mean()
    return total
