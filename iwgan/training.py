"""The generic training loop: drives any method by its phases (see iwgan.methods).

One seed drives every random source of training (initialisation, data, latent draws,
gradient-penalty interpolation) through torch's global generator, in a fixed order;
evaluation draws from generators of its own (:func:`derived_generator`), so evaluating
never shifts the training stream.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from iwgan.methods import Models, get_method
from iwgan.mixtures import get_mixture


class Diverged(RuntimeError):
    def __init__(self, iteration: int, logs: dict):
        bad = [k for k, v in logs.items() if not math.isfinite(v)]
        super().__init__(f"non-finite loss at iteration {iteration}: {', '.join(bad)}")
        self.iteration = iteration


@dataclass
class TrainResult:
    models: Models
    iterations: int                 # iterations actually run
    stopped_early: bool = False     # Algorithm 1's stopping rule fired
    wall_time: float = 0.0
    history: list = field(default_factory=list)


def derived_seed(seed: int, purpose: str) -> int:
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def derived_generator(seed: int, purpose: str) -> torch.Generator:
    """A generator for one purpose (evaluation, ...), independent of training's stream."""
    return torch.Generator().manual_seed(derived_seed(seed, purpose))


def configure_torch(cfg) -> None:
    """Threads and determinism settings; on CPU the same seed and thread count already
    give byte-identical results, ``deterministic`` matters for CUDA kernels."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=False)
    torch.backends.cudnn.deterministic = cfg.deterministic
    torch.backends.cudnn.benchmark = not cfg.deterministic


class TrainingClock:
    """Training time: wall time since ``start()`` minus the time spent in ``evaluation``
    blocks (the ``on_eval`` hooks), so that curves are against training time."""

    def __init__(self, on_eval=None, eval_every: int = 0):
        if on_eval is not None and eval_every <= 0:
            raise ValueError(f"eval_every must be a positive integer, got {eval_every}")
        self.eval_seconds = 0.0
        self.begin = time.perf_counter()

    def start(self) -> None:
        self.begin = time.perf_counter()

    @contextmanager
    def evaluation(self):
        eval_start = time.perf_counter()
        try:
            yield
        finally:
            self.eval_seconds += time.perf_counter() - eval_start

    def training_seconds(self) -> float:
        return time.perf_counter() - self.begin - self.eval_seconds


def train(cfg, on_log=None, progress=None, on_eval=None, eval_every=0) -> TrainResult:
    """Train ``cfg.method`` on ``cfg.mixture``; raises :class:`Diverged` on a NaN/inf loss.

    ``on_log(record)`` receives every ``log_every``-th iteration's record (losses as
    floats, iteration, wall time); ``progress(n)`` is told of every finished iteration.
    ``on_eval(iteration, models)``, if given, is called before the first iteration (0),
    every ``eval_every`` iterations and after the last; it must draw from generators of
    its own and leave ``models`` unchanged. Time spent in it is excluded from the
    records' and the result's ``wall_time``, so curves are against training time.
    """
    configure_torch(cfg)
    method = get_method(cfg.method)
    mixture = get_mixture(cfg.mixture, cfg.preset)
    torch.manual_seed(cfg.seed)
    models = method.build(cfg)
    steps = method.phases(cfg)
    window = {k: deque(maxlen=cfg.stop_window) for k in ("dual_gap", "objective_L")}
    result = TrainResult(models=models, iterations=0)
    clock = TrainingClock(on_eval, eval_every)

    def evaluate(it):
        with clock.evaluation():
            on_eval(it, models)

    clock.start()
    if on_eval is not None:
        evaluate(0)
    for it in range(1, cfg.iterations + 1):
        logs = {}
        for step, count in steps:
            for _ in range(count):
                x = mixture.sample(cfg.batch_size)
                z = torch.randn(cfg.batch_size, cfg.z_dim)
                logs.update(step(models, x, z, cfg))
        values = dict(zip(logs, torch.stack(list(logs.values())).tolist()))
        if not all(math.isfinite(v) for v in values.values()):
            raise Diverged(it, values)
        result.iterations = it
        if progress:
            progress(1)
        if cfg.stop_rule:
            for k in window:
                window[k].append(values[k])
            result.stopped_early = stop_rule_met(window, cfg)
        if it % cfg.log_every == 0 or it == cfg.iterations or result.stopped_early:
            record = {"iteration": it,
                      "wall_time": clock.training_seconds(), **values}
            result.history.append(record)
            if on_log:
                on_log(record)
        if on_eval is not None and (it % eval_every == 0 or it == cfg.iterations
                                    or result.stopped_early):
            evaluate(it)
        if result.stopped_early:
            break
    result.wall_time = clock.training_seconds()
    return result


def stop_rule_met(window: dict, cfg) -> bool:
    """Algorithm 1 stops when DualGap < eps_1 and L < eps_2. Both batch estimates are noisy
    and can be negative, so the rule is checked on the magnitudes of their means over the
    last ``stop_window`` iterations, once the window is full."""
    if len(window["dual_gap"]) < cfg.stop_window:
        return False
    gap = abs(sum(window["dual_gap"]) / len(window["dual_gap"]))
    loss = abs(sum(window["objective_L"]) / len(window["objective_L"]))
    return gap < cfg.stop_gap and loss < cfg.stop_loss
