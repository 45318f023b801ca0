"""The method interface and the registry of methods by name.

Every method is one module with the same small set of names, so that the diff between two
method files is the method and nothing else (docs/add-a-method.md walks through one):

    HAS_ENCODER            whether the method learns an encoder Q
    OPTIONS                its own options (beyond the run config): name -> Option(default,
                           choices or minimum); typed by their defaults, checked once,
                           when a run's config is made; losses read them resolved, as
                           ``cfg.method_options``
    LOGS                   the names its losses log (defined in its docstring)
    build(cfg)             -> Models: the shared networks, its extra modules, and which
                           modules each of its optimisers steps
    phases(cfg)            -> [Phase(loss, optimizer, count, draws), ...], run in order
                           every outer iteration
    <phase>_loss(m, x, z, cfg, noise)
                           -> (loss, logs): a pure function of the networks and the batch
                           for one member (the trainer does backward and the optimiser
                           step, and runs K members at once by vmap over it)

and, where the defaults do not fit:

    USES                   the run settings of :data:`SHARED_SETTINGS` it reads (default:
                           none). One it does not read keeps the profile's value in its
                           runs, so that it cannot give two runs that train alike two names
    IMAGES                 True if it trains on images too, on the image networks of
                           Appendix D2/D3 (default False: points only)
    generate(m, z), encode(m, x)
                           G(z) and Q(x) without gradients (default: :func:`generate`,
                           :func:`encode`, the shared networks')
    DUALITY_GAP            the objective whose duality gap eq. (4) measures, a
                           :class:`GapValue` (default: iWGAN's L for a method with an
                           encoder, its critic standing for f; a method without an encoder
                           that declares none has no duality gap)

A loss takes its random draws from ``noise`` (the names its Phase lists in ``draws``,
drawn by the trainer from the member's own generator, in that order, after the data
batch and the latent batch), never from a global generator.

A method is found by its name alone (:func:`get_method`), so that spawned workers and
cluster jobs, which see only a run's config, find it as the process that made the config
did: a built-in (:data:`BUILTIN`), else an installed package's entry point in the group
:data:`ENTRY_POINTS` (``[project.entry-points."iwgan_bench.methods"] wae_gan =
"mypkg.wae_gan"``: a short name, which keeps run ids clean), else a module path
(``mypkg.wae_gan``). ``python -m iwgan check-method <name>`` checks a method against this
interface (iwgan.engine.conformance).
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable
from importlib import metadata
from types import ModuleType
from typing import NamedTuple

import torch
from torch import nn

# The built-in methods by name, in the paper's order; baselines live in their own package
# and are found by name like any other method (the core imports none of them).
BUILTIN = {
    "iwgan": "iwgan.core.iwgan",
    "wgan_gp": "baselines.wgan_gp",
    "gan": "baselines.gan",
    "ali": "baselines.ali",
    "bigan": "baselines.bigan",
    "alpha_gan": "baselines.alpha_gan",
}
METHOD_NAMES = tuple(BUILTIN)
# The methods a grid runs when none are named: iWGAN and the baselines its paper compares
# it with (ALI with its stochastic encoder). The vanilla GAN and BiGAN are built-ins too,
# run when named (``--methods ... gan bigan``): adding them to every default grid would
# cost half as much again as the grid itself.
DEFAULT_METHODS = ("iwgan", "wgan_gp", "ali", "alpha_gan")
ENTRY_POINTS = "iwgan_bench.methods"
# Run settings that only some methods read (iwgan.engine.config): n_critic, the critic
# steps of a critic loop (iWGAN, WGAN-GP; the GAN, ALI, BiGAN and alpha-GAN update every
# network once an iteration), and lambda_mmd, iWGAN's MMD weight. lambda_gp is not among
# them: the duality gap's sup step uses it for every method.
SHARED_SETTINGS = ("n_critic", "lambda_mmd")
ADD_A_METHOD = "docs/add-a-method.md"
_MODULE_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class Option(NamedTuple):
    """One option of a method: its ``default``, whose type every value must have (an int
    also passes for a float), and the values it allows: one of ``choices``, or at least
    ``minimum``."""

    default: object
    choices: tuple = ()
    minimum: float | None = None
    help: str = ""

    def check(self, method: str, name: str, value):
        """``value`` as this option holds it (an int for a float option becomes a float);
        a value of another type or outside what it allows is an error naming both."""
        kind = type(self.default)
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            raise ValueError(f"method {method!r} option {name!r} takes a {kind.__name__}, got "
                             f"{value!r} ({type(value).__name__})")
        if self.choices and value not in self.choices:
            raise ValueError(f"method {method!r} option {name!r} must be one of "
                             f"{', '.join(map(repr, self.choices))}, got {value!r}")
        if self.minimum is not None and not value >= self.minimum:
            raise ValueError(f"method {method!r} option {name!r} must be at least "
                             f"{self.minimum:g}, got {value!r}")
        return value


class Phase(NamedTuple):
    """One step of an outer iteration: minimise ``loss`` with ``optimizer``, ``count``
    times, each time on a fresh batch and fresh ``draws``."""

    loss: Callable
    optimizer: str
    count: int
    draws: tuple[str, ...] = ()


class GapValue(NamedTuple):
    """The objective whose duality gap eq. (4) measures (iwgan.core.duality_gap):
    ``value(m, x, z)``, and ``real_side(m, x)``, the points the critic is to score above
    G(z) in it (its sup step's gradient penalty is taken between the two); ``kind`` names
    it in results ("eq4": iWGAN's L; "wgan": the WGAN objective V)."""

    kind: str
    value: Callable
    real_side: Callable


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
    """The optimiser every method uses, with the run's learning rate and betas; its fused
    kernel where the run's ``adam`` setting asks for it (iwgan.engine.optim: a stack's
    members use the same arithmetic)."""
    return torch.optim.Adam(list(params), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            fused=getattr(cfg, "adam", "torch") == "fused" or None)


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


# ---------------------------------------------------------------------------------------
# A method found by name
# ---------------------------------------------------------------------------------------

# The interface's names: (required, what it must be, the check).
INTERFACE = (
    ("HAS_ENCODER", True, "a bool", lambda v: isinstance(v, bool)),
    ("OPTIONS", True, "a dict of name -> Option(default, ...)",
     lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(o, Option)
                                           for k, o in v.items())),
    ("LOGS", True, "a non-empty tuple of names",
     lambda v: isinstance(v, (tuple, list)) and v and all(isinstance(n, str) for n in v)),
    ("build", True, "a function of the run config", callable),
    ("phases", True, "a function of the run config", callable),
    ("USES", False, f"a tuple of names among {SHARED_SETTINGS}",
     lambda v: isinstance(v, (tuple, list)) and set(v) <= set(SHARED_SETTINGS)),
    ("IMAGES", False, "a bool", lambda v: isinstance(v, bool)),
    ("generate", False, "a function (m, z)", callable),
    ("encode", False, "a function (m, x)", callable),
    ("DUALITY_GAP", False, "a GapValue", lambda v: isinstance(v, GapValue)),
)


def interface_problems(module) -> list[str]:
    """What ``module`` lacks of the method interface, or has of the wrong kind."""
    missing = [name for name, required, _, _ in INTERFACE
               if required and not hasattr(module, name)]
    problems = [f"lacks {', '.join(missing)}"] if missing else []
    problems += [f"{name} must be {what}" for name, _, what, ok in INTERFACE
                 if hasattr(module, name) and not ok(getattr(module, name))]
    return problems


class Method:
    """A method found by name: its module, checked against the interface, with the
    defaults of its optional names. The module's other names read through (``.LOGS``,
    ``.critic_loss``, ...)."""

    def __init__(self, name: str, module: ModuleType, origin: str = "module path"):
        problems = interface_problems(module)
        if problems:
            raise ValueError(f"method {name!r} (module {module.__name__}) does not follow the "
                             f"method interface: {'; '.join(problems)} ({ADD_A_METHOD})")
        for option, spec in module.OPTIONS.items():
            spec.check(name, option, spec.default)   # a default of another type than itself
        self.name, self.module, self.origin = name, module, origin

    def __getattr__(self, attr):
        if attr.startswith("__") or attr == "module":   # copy and pickle look these up
            raise AttributeError(attr)
        return getattr(self.module, attr)

    def __repr__(self) -> str:
        return f"<method {self.name!r} from {self.module.__name__}>"

    @property
    def has_encoder(self) -> bool:
        return self.module.HAS_ENCODER

    @property
    def options(self) -> dict[str, Option]:
        return self.module.OPTIONS

    @property
    def logs(self) -> tuple[str, ...]:
        return tuple(self.module.LOGS)

    @property
    def uses(self) -> tuple[str, ...]:
        return tuple(getattr(self.module, "USES", ()))

    @property
    def images(self) -> bool:
        return getattr(self.module, "IMAGES", False)

    @property
    def duality_gap(self) -> GapValue | None:
        declared = getattr(self.module, "DUALITY_GAP", None)
        if declared is not None or not self.has_encoder:
            return declared
        return get_method("iwgan").duality_gap   # eq. (4)'s L, this method's critic as f

    def build(self, cfg) -> Models:
        return self.module.build(cfg)

    def phases(self, cfg) -> list[Phase]:
        return self.module.phases(cfg)

    def generator_updates(self, cfg) -> int:
        """Generator updates per outer iteration under ``cfg``: the counts of the phases
        whose optimiser steps the generator (Algorithm 1: iWGAN's n_critic G/Q steps; one
        for a baseline that steps G once an iteration). Read from the method's own phases
        and optimisers, so a method plugged in by name counts as it trains."""
        optimized = self.build(cfg).optimized
        return sum(p.count for p in self.phases(cfg)
                   if "generator" in optimized.get(p.optimizer, ()))

    def generate(self, m: Models, z):
        return getattr(self.module, "generate", generate)(m, z)

    def encode(self, m: Models, x):
        self.require_encoder("codes")
        return getattr(self.module, "encode", encode)(m, x)

    def require_encoder(self, what: str) -> None:
        if not self.has_encoder:
            encoders = [n for n in METHOD_NAMES if get_method(n).has_encoder]
            raise ValueError(f"method {self.name!r} has no encoder: it has no {what} "
                             "(reconstruction, latent codes and the quality score need Q); "
                             f"choose a method with one ({', '.join(encoders)})")

    def resolve_options(self, options: dict) -> dict:
        """Every option of the method: the value ``options`` gives, else its default; an
        option it does not have, or a value it does not take, is an error naming both."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            have = ", ".join(self.options) or "none"
            raise ValueError(f"method {self.name!r} has no option "
                             f"{', '.join(map(repr, unknown))}; its options: {have}")
        return {name: spec.check(self.name, name, options.get(name, spec.default))
                for name, spec in self.options.items()}

    def given_options(self, options: dict) -> dict:
        """``options`` as a run's identity holds them: checked and typed, without those at
        their default (which make no other run than leaving them out)."""
        resolved = self.resolve_options(options)
        return {name: resolved[name] for name in options
                if resolved[name] != self.options[name].default}


def installed_methods() -> dict[str, metadata.EntryPoint]:
    """The methods installed packages name in the entry-point group :data:`ENTRY_POINTS`."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINTS)}


@functools.cache
def get_method(name: str) -> Method:
    """The method called ``name``: a built-in, else an installed entry point of that name,
    else the module at that path. One line says what is wrong otherwise."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a method name is a non-empty string, got {name!r}")
    if name in BUILTIN:
        return Method(name, importlib.import_module(BUILTIN[name]), "built-in")
    installed = installed_methods()
    if name in installed:
        ep = installed[name]
        try:
            module = ep.load()
        except Exception as err:  # the package is broken, not the name: say which
            raise ValueError(f"method {name!r} (entry point {ep.value}) failed to import: "
                             f"{type(err).__name__}: {err}") from err
        return Method(name, module, f"entry point {ENTRY_POINTS}: {ep.value}")
    module = None
    if _MODULE_PATH.match(name):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if not (err.name and (name == err.name or name.startswith(err.name + "."))):
                raise ValueError(f"method module {name!r} failed to import: {err}") from err
        except Exception as err:  # an error inside the module: name it and the module
            raise ValueError(f"method module {name!r} failed to import: "
                             f"{type(err).__name__}: {err}") from err
    if module is not None:
        return Method(name, module)
    raise ValueError(
        f"unknown method {name!r}: not a built-in ({', '.join(METHOD_NAMES)}), not an "
        f"installed method ({', '.join(sorted(installed)) or 'none installed'}) and not an "
        "importable module path; pip install the package that provides it, or put its "
        f"module on the Python path and give its dotted path ({ADD_A_METHOD})")
