"""The method interface and the registry of methods by name.

Every method is one file with the same small set of names, so that the diff between two
method files is the method and nothing else:

    HAS_ENCODER            whether the method learns an encoder Q
    OPTIONS                its own options with their defaults (beyond the run config)
    LOGS                   the names its losses log (defined in its docstring)
    build(cfg)             -> Models: the shared networks, its extra modules, and which
                           modules each of its optimisers steps
    phases(cfg)            -> [Phase(loss, optimizer, count, draws), ...], run in order
                           every outer iteration
    <phase>_loss(m, x, z, cfg, noise)
                           -> (loss, logs): a pure function of the networks and the batch
                           for one member (the trainer does backward and the optimiser
                           step, and runs K members at once by vmap over it)
    generate(m, z), encode(m, x)
                           G(z) and Q(x): this module's versions

A loss takes its random draws from ``noise`` (the names its Phase lists in ``draws``,
drawn by the trainer from the member's own generator, in that order, after the data
batch and the latent batch), never from a global generator.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import NamedTuple

import torch
from torch import nn

# name -> module; baselines live in their own package but are chosen by name like iWGAN.
METHOD_MODULES = {
    "iwgan": "iwgan.core.iwgan",
    "wgan_gp": "baselines.wgan_gp",
    "ali": "baselines.ali",
    "alpha_gan": "baselines.alpha_gan",
}
METHOD_NAMES = tuple(METHOD_MODULES)


def get_method(name: str) -> ModuleType:
    if name not in METHOD_MODULES:
        raise ValueError(f"unknown method {name!r}; valid choices: {', '.join(METHOD_NAMES)}")
    return importlib.import_module(METHOD_MODULES[name])


def resolve_options(method: str, options: dict) -> dict:
    """The method's options with ``options`` applied; one it does not have is an error."""
    module = get_method(method)
    unknown = sorted(set(options) - set(module.OPTIONS))
    if unknown:
        have = ", ".join(module.OPTIONS) or "none"
        raise ValueError(f"method {method!r} has no option {', '.join(map(repr, unknown))}; "
                         f"its options: {have}")
    return {**module.OPTIONS, **options}


class Phase(NamedTuple):
    """One step of an outer iteration: minimise ``loss`` with ``optimizer``, ``count``
    times, each time on a fresh batch and fresh ``draws``."""

    loss: Callable
    optimizer: str
    count: int
    draws: tuple[str, ...] = ()


# The random inputs a loss may ask for, by name: (batch size, x's shape per sample,
# z_dim, generator, device) -> tensor.
DRAWS = {
    # gradient-penalty interpolation weights, one per sample, broadcast over x's dims
    "gp_eps": lambda n, x_shape, z_dim, g, device: torch.rand(
        n, *([1] * len(x_shape)), generator=g, device=device),
    # a stochastic encoder's reparameterisation noise
    "code_noise": lambda n, x_shape, z_dim, g, device: torch.randn(
        n, z_dim, generator=g, device=device),
}


class Models(nn.Module):
    """What a method trains: the shared networks, its own additions (``extra``), and the
    modules each of its optimisers steps (``optimized``: optimiser name -> module names).
    One nn.Module, so that K members can be stacked and called by ``functional_call``;
    ``forward(fn, *args)`` is ``fn(self, *args)``."""

    def __init__(self, generator: nn.Module, critic: nn.Module, encoder: nn.Module | None = None,
                 extra: dict[str, nn.Module] | None = None,
                 optimized: dict[str, tuple[str, ...]] | None = None):
        super().__init__()
        self.generator, self.critic, self.encoder = generator, critic, encoder
        self.extra = nn.ModuleDict(extra or {})
        self.optimized = dict(optimized or {})
        names = set(self.named())
        for opt, modules in self.optimized.items():
            unknown = sorted(set(modules) - names)
            if unknown:
                raise ValueError(f"optimiser {opt!r} names unknown module(s) {unknown}")

    def forward(self, fn, *args):
        return fn(self, *args)

    def named(self) -> dict[str, nn.Module]:
        """generator, critic, encoder (if any) and the extra modules, by name."""
        named = {"generator": self.generator, "critic": self.critic, "encoder": self.encoder}
        return {k: v for k, v in {**named, **self.extra}.items() if v is not None}

    def parameter_names(self, optimizer: str) -> list[str]:
        """The names (as in ``named_parameters``) of the parameters ``optimizer`` steps."""
        prefixes = tuple(("extra." if m in self.extra else "") + m + "."
                         for m in self.optimized[optimizer])
        return [n for n, _ in self.named_parameters() if n.startswith(prefixes)]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def adam(params, cfg) -> torch.optim.Adam:
    """The optimiser every method uses, with the run's learning rate and betas."""
    return torch.optim.Adam(list(params), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params,
            sync=None) -> None:
    """One optimiser step on ``loss``; gradients reach only ``params`` (the optimiser's);
    ``sync(params)``, if given, runs between the backward pass and the step (data
    parallelism averages the gradients over processes there)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    if sync is not None:
        sync(params)
    optimizer.step()


@torch.no_grad()
def generate(m: Models, z):
    """G(z), without gradients, on the networks' device; returned on the CPU."""
    return m.generator(z.to(m.device)).cpu()


@torch.no_grad()
def encode(m: Models, x):
    """Q(x), without gradients, on the networks' device; returned on the CPU."""
    return m.encoder(x.to(m.device)).cpu()
