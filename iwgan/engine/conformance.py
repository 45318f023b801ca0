"""The conformance check a method's author runs on their module:
``python -m iwgan check-method <name or module path>``.

Each check trains or evaluates for real, on CPU, on the smallest networks (the ``tiny``
mixture profile; the digits ``smoke`` networks at width 0.05 for images), and says in one
line what it found or what is wrong and how to fix it:

    interface   the names of iwgan.core.methods, of the right kinds (checked when the
                method is found: a module lacking one is refused before any check runs),
                and ``build(cfg)``, ``phases(cfg)`` callable with a run config
    options     every option typed by its default, within what it allows, and a run
                config made with each value of an option with choices
    phases      every phase's loss, optimiser (one of the models' own), count and draws
    points      one training iteration (every phase) on a mixture, for the defaults and
                for each value of an option with choices: finite logs, exactly the names
                LOGS declares, every optimised module changed; the losses pure functions
                of their inputs (the same value twice, no draw from the global generator)
    images      the same on the image networks, where the method declares IMAGES = True
    generate    G(z) of the data's shape; Q(x) of z_dim for a method with an encoder, a
                clear error for one without
    stacking    two members trained as one stacked model equal their single runs (float64,
                1e-9 relative), or why the method's networks cannot be stacked
    duality gap one estimate of eq. (4) for the objective the method names, finite
"""

from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass, replace

import torch

from iwgan.core.duality_gap import duality_gap
from iwgan.core.methods import DRAWS, Phase, get_method
from iwgan.data.mixtures import MixtureBatches, get_mixture
from iwgan.engine.config import make_config, make_image_config
from iwgan.engine.stacking import why_not_stackable
from iwgan.engine.trainer import Trainer


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


class RandomImages:
    """Random images in [0, 1] of the image networks' shape, drawn from the member's own
    generator (a training step needs data of the right shape, not a dataset)."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def sample(self, k: int, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(n, *self.shape, generator=generator)


@contextlib.contextmanager
def default_dtype(dtype):
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def points_config(name: str, **kw):
    return make_config("tiny", method=name, **kw)


def image_config(name: str, **kw):
    return make_image_config("digits", "smoke", method=name, width=0.05, batch_size=4,
                             threads=1, **kw)


def variants(method) -> list[dict]:
    """The method's options at their defaults, then each other value of an option with
    choices, one at a time."""
    return [{}] + [{name: value} for name, spec in method.options.items()
                   for value in spec.choices if value != spec.default]


def check_interface(method) -> str:
    for name in ("build", "phases"):
        fn = getattr(method.module, name)
        try:
            inspect.signature(fn).bind(None)
        except TypeError as err:
            raise AssertionError(f"{name} must take the run config alone: {name}(cfg) "
                                 f"({err})") from None
    return (f"HAS_ENCODER {method.has_encoder}, IMAGES {method.images}, USES "
            f"{', '.join(method.uses) or 'none'}, LOGS "
            f"{', '.join(method.logs)}")


def check_options(method) -> str:
    for options in variants(method)[1:]:
        points_config(method.name, options=options)   # checked and normalised as any run's
    return "; ".join(f"{name}: {type(spec.default).__name__} = {spec.default!r}"
                     + (f" (one of {', '.join(map(repr, spec.choices))})" if spec.choices
                        else f" (>= {spec.minimum:g})" if spec.minimum is not None else "")
                     for name, spec in method.options.items()) or "none"


def check_phases(method) -> str:
    cfg = points_config(method.name)
    models = method.build(cfg)
    phases = method.phases(cfg)
    assert phases, "phases(cfg) returned no phase: return [Phase(loss, optimizer, count), ...]"
    for phase in phases:
        assert isinstance(phase, Phase), f"phases(cfg) must return Phase(...)s, got {phase!r}"
        assert callable(phase.loss), f"a phase's loss must be a function, got {phase.loss!r}"
        assert phase.optimizer in models.optimized, (
            f"phase {phase.loss.__name__} steps optimiser {phase.optimizer!r}, which build's "
            f"Models does not name (its optimisers: {', '.join(models.optimized)})")
        assert isinstance(phase.count, int) and phase.count > 0, (
            f"phase {phase.loss.__name__} runs {phase.count!r} times a step: a positive int")
        unknown = sorted(set(phase.draws) - set(DRAWS))
        assert not unknown, (f"phase {phase.loss.__name__} asks for draws {unknown}; the "
                             f"trainer draws {', '.join(DRAWS)}")
    return ", ".join(f"{p.loss.__name__} ({p.optimizer}, x{p.count})" for p in phases)


def snapshot(models) -> dict:
    return {k: [p.detach().clone() for p in m.parameters()] for k, m in models.named().items()}


def one_iteration(method, cfg, data) -> str:
    """One iteration of every phase on ``data``: its logs and which modules moved."""
    trainer = Trainer([cfg], data)
    models = trainer.members.member(0)
    before = snapshot(models)
    [logs] = trainer.run_iteration()
    declared = set(method.logs)
    assert set(logs) == declared, (
        f"the losses log {sorted(logs)}, LOGS declares {sorted(declared)}: make LOGS the "
        "names the losses return")
    bad = sorted(k for k, v in logs.items() if not math.isfinite(v))
    assert not bad, f"non-finite logged values after one iteration: {bad}"
    after = snapshot(models)
    optimised = {m for modules in models.optimized.values() for m in modules}
    still = sorted(name for name in optimised
                   if all(torch.equal(a, b) for a, b in zip(before[name], after[name])))
    assert not still, (f"module(s) {still} are stepped by an optimiser but did not change: "
                       "does its phase's loss reach them?")
    x, z = data.sample(0, cfg.batch_size, torch.Generator().manual_seed(1)), \
        torch.randn(cfg.batch_size, cfg.z_dim, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    for phase in method.phases(cfg):
        noise = {n: DRAWS[n](cfg.batch_size, x.shape[1:], cfg.z_dim, g, "cpu")
                 for n in phase.draws}
        state = torch.get_rng_state()
        first, _ = phase.loss(models, x, z, cfg, noise)
        second, _ = phase.loss(models, x, z, cfg, noise)
        assert first.dim() == 0, f"{phase.loss.__name__} must return a scalar loss"
        assert torch.equal(first, second), (
            f"{phase.loss.__name__} gave two values on the same inputs: take every random "
            "draw from `noise` (Phase draws), never from a global generator")
        assert torch.equal(state, torch.get_rng_state()), (
            f"{phase.loss.__name__} drew from torch's global generator: ask the trainer for "
            "the draw (Phase draws) instead")
    return f"{len(logs)} finite logs, every optimised module ({', '.join(sorted(optimised))}) " \
           "changed"


def check_points(method) -> str:
    return one_iteration_each(method, points_config, lambda cfg: MixtureBatches([cfg]))


def check_images(method) -> str:
    if not method.images:
        return "not declared (IMAGES = True): the images command refuses this method"
    return one_iteration_each(method, image_config, lambda cfg: RandomImages(cfg.input_shape))


def one_iteration_each(method, config, data) -> str:
    """:func:`one_iteration` for every variant of the method's options."""
    found = []
    for options in variants(method):
        cfg = config(method.name, options=options)
        result = one_iteration(method, cfg, data(cfg))
        found.append(f"{options}: {result}" if options else result)
    return "; ".join(found)


def check_generate(method) -> str:
    found = []
    for cfg in [points_config(method.name)] + ([image_config(method.name)]
                                                if method.images else []):
        shape = (2,) if cfg.arch == "mixture" else cfg.input_shape
        models = method.build(cfg)
        g = torch.Generator().manual_seed(0)
        out = method.generate(models, torch.randn(7, cfg.z_dim, generator=g))
        assert tuple(out.shape) == (7, *shape), (
            f"generate(m, z) on the {cfg.arch} networks gave shape {tuple(out.shape)}, not "
            f"{(7, *shape)}")
        assert not out.requires_grad, "generate(m, z) must return values without gradients"
        x = torch.rand(7, *shape, generator=g)
        if method.has_encoder:
            codes = method.encode(models, x)
            assert tuple(codes.shape) == (7, cfg.z_dim), (
                f"encode(m, x) gave shape {tuple(codes.shape)}, not {(7, cfg.z_dim)}")
        else:
            with contextlib.suppress(ValueError):
                method.encode(models, x)
                raise AssertionError("encode of a method without an encoder must refuse")
        found.append(cfg.arch)
    return f"G(z) and {'Q(x)' if method.has_encoder else 'no Q'} on the " \
           f"{' and '.join(found)} networks"


def check_stacking(method) -> str:
    cfgs = [points_config(method.name, seed=s, mixture=x, iterations=3)
            for s, x in ((0, "ring"), (1, "grid"))]
    reason = why_not_stackable(cfgs[0])
    if reason:
        return f"not stackable ({reason}): its runs train one at a time"
    with default_dtype(torch.float64):
        stacked = Trainer(cfgs, MixtureBatches(cfgs)).fit()
        for k, cfg in enumerate(cfgs):
            [single] = Trainer([cfg], MixtureBatches([cfg])).fit()
            for (name, a), b in zip(single.models.named_parameters(),
                                    stacked[k].models.parameters()):
                worst = float(((a - b).abs() / a.abs().clamp_min(1e-12)).max().detach())
                assert worst <= 1e-9, (
                    f"member {k} of a stack differs from its single run in {name} by "
                    f"{worst:.2g} (relative): a loss must be a function of its own member's "
                    "inputs only (no batch statistics across members, no in-place state)")
    return "2 members equal their single runs after 3 iterations (float64, 1e-9)"


def check_duality_gap(method) -> str:
    gap = method.duality_gap
    if gap is None:
        return ("none (no encoder, no DUALITY_GAP): the convergence experiment refuses this "
                "method")
    cfg = points_config(method.name)
    torch.manual_seed(0)
    models = method.build(cfg)
    mixture = get_mixture(cfg.mixture, cfg.preset)
    out = duality_gap(models, replace(cfg, batch_size=16), mixture.sample,
                      torch.Generator().manual_seed(0), steps=1, n_eval=64)
    assert math.isfinite(out["dual_gap"]), f"the duality gap is {out['dual_gap']}"
    declared = "declared" if getattr(method.module, "DUALITY_GAP", None) else "default"
    return f"{gap.kind} ({declared}): {out['dual_gap']:.3g} after one step of each copy"


CHECKS = (("interface", check_interface), ("options", check_options),
          ("phases", check_phases), ("points", check_points), ("images", check_images),
          ("generate", check_generate), ("stacking", check_stacking),
          ("duality gap", check_duality_gap))


def check_method(name: str) -> list[Check]:
    """Every check on the method called ``name``; finding it is not a check (one line
    says what is wrong: iwgan.core.methods.get_method)."""
    method = get_method(name)
    out = []
    with torch.random.fork_rng(devices=[]):
        for label, check in CHECKS:
            try:
                out.append(Check(label, True, check(method)))
            except Exception as err:  # a failing method: report it, check the rest
                detail = str(err) if isinstance(err, AssertionError) else \
                    f"{type(err).__name__}: {err}"
                out.append(Check(label, False, detail.splitlines()[0] if detail else ""))
    return out
