"""The method interface and the registry of methods by name.

Every method is one file with the same small set of names, so that the diff between two
method files is the method and nothing else:

    HAS_ENCODER            whether the method learns an encoder Q
    OPTIONS                its own options with their defaults (beyond RunConfig)
    LOGS                   the names its steps log (defined in its docstring)
    build(cfg)             -> Models: the shared networks, its extra modules, optimisers
    phases(cfg)            -> [(step, count), ...] run in order every outer iteration
    critic_step(m, x, z, cfg), generator_step(m, x, z, cfg)
                           -> dict of detached scalar tensors to log
    generate(m, z), encode(m, x)
                           G(z) and Q(x): the files re-export this module's versions

:func:`iwgan.training.train` drives any method by its phases and knows nothing of any one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

import torch
from torch import nn

# name -> module; baselines live in their own package but are chosen by name like iWGAN.
METHOD_MODULES = {
    "iwgan": "iwgan.iwgan",
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


@dataclass
class Models:
    """What a method trains: the shared networks, its own additions, its optimisers."""

    generator: nn.Module
    critic: nn.Module
    encoder: nn.Module | None = None
    extra: dict[str, nn.Module] = field(default_factory=dict)
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)

    def modules(self) -> dict[str, nn.Module]:
        named = {"generator": self.generator, "critic": self.critic, "encoder": self.encoder}
        return {k: v for k, v in {**named, **self.extra}.items() if v is not None}

    def state_dict(self) -> dict:
        return {"modules": {k: v.state_dict() for k, v in self.modules().items()},
                "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()}}

    def load_state_dict(self, state: dict) -> None:
        for k, v in self.modules().items():
            v.load_state_dict(state["modules"][k])
        for k, v in self.optimizers.items():
            v.load_state_dict(state["optimizers"][k])


def adam(modules, cfg) -> torch.optim.Adam:
    """The optimiser every method uses, with the run's learning rate and betas."""
    params = [p for m in modules for p in m.parameters()]
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


@torch.no_grad()
def generate(m: Models, z):
    """G(z), without gradients: every method's ``generate``."""
    return m.generator(z)


@torch.no_grad()
def encode(m: Models, x):
    """Q(x), without gradients: the ``encode`` of every method with an encoder."""
    return m.encoder(x)


def update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimiser step on ``loss``; gradients reach only this optimiser's parameters."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    optimizer.step()
