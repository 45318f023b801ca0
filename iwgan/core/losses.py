"""Loss terms shared by the methods. Each works on any tensor shape: points (N, 2) and
images (N, C, H, W) alike, because everything per sample is flattened from dim 1 on.

They are written for one member of a run (no member dimension); the trainer runs K
members at once by ``torch.func.vmap`` over these same functions (iwgan.engine.stacking),
so every random draw is an argument, never a call to the global generator.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.func import grad

IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def reconstruction_error(x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm ||x - G(Q(x))|| (not squared), shape (N,)."""
    return (x - x_rec).flatten(1).norm(dim=1)


def wgan_value(m, x, z, fake=None) -> torch.Tensor:
    """V(G, f) = E f(x) - E f(G(z)), the WGAN objective (2) (``fake``: G(z) if already
    drawn)."""
    return m.critic(x).mean() - m.critic(m.generator(z) if fake is None else fake).mean()


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor,
                     eps: torch.Tensor) -> torch.Tensor:
    """Gulrajani et al. 2017: E[(||grad f(x_hat)||_2 - 1)^2] on x_hat = e*real + (1-e)*fake,
    ``eps`` ~ U[0, 1] per sample, shape (N, 1, ...) (drawn by the caller). Differentiable in
    the critic's parameters."""
    x_hat = eps * real.detach() + (1 - eps) * fake.detach()
    return ((input_gradient(critic, x_hat).flatten(1).norm(dim=1) - 1) ** 2).mean()


_CLOSED_FORM = [True]


@contextlib.contextmanager
def autograd_input_gradient():
    """Compute every input gradient by automatic differentiation, also for ReLU MLPs (the
    benchmarks measure the closed form against it; the tests check they agree)."""
    _CLOSED_FORM.append(False)
    try:
        yield
    finally:
        _CLOSED_FORM.pop()


def is_relu_mlp(module) -> bool:
    """Linear layers with ReLU between them, one output: the mixture critic of D1."""
    return (isinstance(module, nn.Sequential) and len(module) >= 3 and len(module) % 2 == 1
            and all(isinstance(m, nn.Linear if i % 2 == 0 else nn.ReLU)
                    for i, m in enumerate(module))
            and module[-1].out_features == 1)


def input_gradient(critic, x: torch.Tensor) -> torch.Tensor:
    """d f(x) / d x per sample, differentiable in the critic's parameters.

    For a ReLU MLP f(x) = w^T relu(W_L ... relu(W_1 x + b_1) ...) + b, the gradient is
    W_1^T D_1 W_2^T D_2 ... W_L^T D_L w with D_i the ReLU masks (1 where the
    pre-activation is positive, as torch's ReLU backward), computed here in closed form:
    the same numbers as autograd's double backward up to float rounding, in fewer and
    larger operations. Any other critic (the image networks) goes through
    ``torch.func.grad``, which also composes with ``vmap``."""
    if not (_CLOSED_FORM[-1] and is_relu_mlp(critic)):
        return grad(lambda inputs: critic(inputs).sum())(x)
    linears = list(critic)[::2]
    masks, h = [], x
    for layer in linears[:-1]:
        h = layer(h)
        masks.append(h > 0)
        h = h.relu()
    g = masks[-1] * linears[-1].weight                  # (N, H_L): w masked by D_L
    for layer, mask in zip(reversed(linears[1:-1]), reversed(masks[:-1])):
        g = (g @ layer.weight) * mask
    return g @ linears[0].weight


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
