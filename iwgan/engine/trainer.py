"""The one trainer: drives any method by its phases (iwgan.core.methods) for K members at
once (iwgan.engine.stacking; K = 1 is a single run), on points or images, on any device.

Every outer iteration runs the method's phases in order, each ``count`` times on fresh
draws; it knows nothing of any one method, nor of any one kind of data. Around that
loop, what an experiment needs comes through hooks (:class:`Hook`): logging, evaluation
every M iterations, sample grids, checkpoints, progress, and rules that end a member
early, such as Algorithm 1's stopping rule (:class:`StopRule`). The trainer itself does
what concerns the members' fate:

- divergence per member: a member whose logged losses turn non-finite is finished at
  that iteration ("diverged"); its NaNs stay in its own slices of the stacked tensors,
  so the others train on unaffected;
- a member a hook ends (``on_values`` returns its status, e.g. "stopped_early") is
  finished at that iteration with a copy of its networks then;
- the moving average of G's and Q's weights (``ema``), which evaluations and the results
  use where it is set (iwgan.engine.stacking.Members.update_average);
- the learning-rate schedule (``lr_schedule``), autocast (``precision``) and the memory
  layout (``channels_last``), which are CUDA options and fall back on CPU, recorded;
- checkpoint and resume (:class:`Checkpoint`): weights, optimiser states, the members'
  generators, the data samplers' states, the iteration and the training time, so that a
  resumed run reaches the very weights an uninterrupted run reaches.

Times are training time: evaluation blocks are excluded (``clock.evaluation()``), and a
member's share of a stack's time is the stack's divided by K.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch

from iwgan.core.duality_gap import stop_rule_met
from iwgan.core.methods import Models
from iwgan.data.mixtures import MixtureBatches
from iwgan.engine.config import STOP_RULE_LOGS, lr_factor
from iwgan.engine.devices import configure_torch, is_cuda
from iwgan.engine.distributed import ONE, World, average
from iwgan.engine.stacking import Members
from iwgan.files import save_torch


class TrainingClock:
    """Training time: wall time since ``start()`` minus the time spent in ``evaluation``
    blocks, plus the time of earlier sessions of a resumed run."""

    def __init__(self):
        self.eval_seconds = 0.0
        self.previous = 0.0
        self.begin = time.perf_counter()

    def start(self, previous: float = 0.0) -> None:
        self.begin, self.previous = time.perf_counter(), previous

    @contextlib.contextmanager
    def evaluation(self):
        eval_start = time.perf_counter()
        try:
            yield
        finally:
            self.eval_seconds += time.perf_counter() - eval_start

    def training_seconds(self) -> float:
        return self.previous + time.perf_counter() - self.begin - self.eval_seconds


def execution_plan(cfg) -> dict:
    """What actually runs: bf16 and channels_last are CUDA options; on CPU they fall back
    to fp32 and the default layout, with a message, and the fallback is recorded."""
    cuda = is_cuda(cfg.device)
    plan = {"precision_used": cfg.precision if cuda else "fp32",
            "channels_last_used": bool(cfg.channels_last and cuda), "notes": []}
    if cfg.precision == "bf16" and not cuda:
        plan["notes"].append("bf16 autocast is a CUDA option; this CPU run uses fp32")
    if cfg.channels_last and not cuda:
        plan["notes"].append("channels_last is a CUDA option; this CPU run uses the default "
                             "memory layout")
    return plan


def autocast(plan: dict):
    if plan["precision_used"] == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class MemberResult:
    """How one member's training ended."""

    cfg: object
    models: Models | None         # its networks at the end (None if it diverged)
    iterations: int               # iterations it ran
    status: str = "finished"      # finished | stopped_early | diverged
    diverged_at: int | None = None
    wall_time: float = 0.0        # its share of the training time
    resumed_from: int = 0         # the iteration a checkpoint held (0: fresh)
    history: list = field(default_factory=list)
    optimizer_state: dict | None = None  # its optimisers' states at the end

    def checkpoint(self) -> dict:
        """What its run directory's checkpoint.pt holds."""
        return {"config": self.cfg.to_dict(), "iterations": self.iterations,
                "modules": self.models.state_dict(), "optimizers": self.optimizer_state}

    @property
    def stopped_early(self) -> bool:
        return self.status == "stopped_early"


class Hook:
    """What an experiment adds around the loop; every method is optional."""

    def on_start(self, trainer: Trainer) -> None:
        """After set-up (and a resume), before the first iteration."""

    def on_values(self, trainer: Trainer, k: int, it: int, values: dict) -> str | None:
        """Member k's finite logged values of iteration ``it`` (floats); return a status
        (e.g. "stopped_early") to finish the member at this iteration."""
        return None

    def on_log(self, trainer: Trainer, k: int, record: dict) -> None:
        """Member k's record of a logged iteration (losses as floats, iteration, time)."""

    def on_iteration(self, trainer: Trainer) -> None:
        """After every iteration's bookkeeping (``trainer.iteration`` is its number)."""

    def on_member_end(self, trainer: Trainer, k: int) -> None:
        """Member k finished before the others (diverged or stopped)."""

    def on_end(self, trainer: Trainer) -> None:
        """After the last iteration."""

    def state_dict(self):
        """What a resumed run needs of this hook (None: nothing); saved in checkpoints."""
        return None

    def load_state_dict(self, state) -> None:
        """Continue from :meth:`state_dict`'s ``state``."""


class Trainer:
    """Train ``cfgs`` (one method; K >= 1 members) on ``data`` (an object whose
    ``sample(k, n, generator)`` draws member k's batch on the run's device)."""

    def __init__(self, cfgs, data, hooks=(), resume: Path | None = None,
                 world: World = ONE, device: str | None = None):
        self.cfgs = list(cfgs)
        self.cfg = self.cfgs[0]
        configure_torch(self.cfg)
        self.world = world
        self.members = Members(self.cfgs, world, device)
        self.data, self.hooks = data, list(hooks)
        self.phases = self.members.method.phases(self.cfg)
        self.plan = execution_plan(self.cfg)
        if self.plan["channels_last_used"] and self.members.k == 1:
            for module in self.members.models.modules():
                module.to(memory_format=torch.channels_last)
        self.schedulers = {}
        if self.cfg.lr_schedule != "constant":
            schedule, total = self.cfg.lr_schedule, self.cfg.iterations
            self.schedulers = {name: torch.optim.lr_scheduler.LambdaLR(
                opt, lambda it: lr_factor(schedule, it, total))
                for name, opt in self.members.optimizers.items()}
        k = self.members.k
        self.iteration = 0
        self.clock = TrainingClock()
        self.status = ["finished"] * k
        self.ended_at: list[int | None] = [None] * k
        self.snapshots: list[Models | None] = [None] * k
        self.histories: list[list] = [[] for _ in range(k)]
        self.resumed_from, previous = 0, 0.0
        if resume is not None and Path(resume).exists():
            previous = self.load_checkpoint(resume)
        self.previous_seconds = previous

    # --- the state of one member ------------------------------------------------------

    def live(self, k: int) -> bool:
        return self.ended_at[k] is None

    def live_members(self) -> list[int]:
        return [k for k in range(self.members.k) if self.live(k)]

    def share(self) -> float:
        """A member's share of the training time so far."""
        return self.clock.training_seconds() / self.members.k

    # --- the loop ---------------------------------------------------------------------

    def run_iteration(self) -> list[dict]:
        """One outer iteration of every member; the logs as floats, one dict per member."""
        logs = {}
        for phase in self.phases:
            for _ in range(phase.count):
                xs, zs, noises = self.members.draw(phase, self.data)
                if self.plan["channels_last_used"]:
                    xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
                with autocast(self.plan):
                    logs.update(self.members.step(phase, xs, zs, noises))
        self.members.update_average()
        for scheduler in self.schedulers.values():
            scheduler.step()
        # float64 holds every dtype a loss comes in (bf16 under autocast) exactly
        stacked = torch.stack([v.double() for v in logs.values()])
        if self.world.distributed:   # each process logged its shard: the batch's mean
            stacked = average(stacked)
        rows = stacked.tolist()  # one sync
        if self.members.k == 1:
            return [dict(zip(logs, rows))]
        return [{name: row[k] for name, row in zip(logs, rows)} for k in range(self.members.k)]

    def fit(self, until: int | None = None) -> list[MemberResult]:
        """Train to the last iteration; ``until`` stops after that iteration without
        the run's end (no ``on_end``: as a kill there would), for tests of resuming."""
        cfg = self.cfg
        last = cfg.iterations if until is None else min(until, cfg.iterations)
        self.clock.start(self.previous_seconds)
        for hook in self.hooks:
            hook.on_start(self)
        for it in range(self.iteration + 1, last + 1):
            values = self.run_iteration()
            self.iteration = it
            for k, v in enumerate(values):
                if self.live(k):
                    self._bookkeeping(k, it, v)
            for hook in self.hooks:
                hook.on_iteration(self)
            if not self.live_members():
                break
        if self.iteration == cfg.iterations or not self.live_members():
            for hook in self.hooks:
                hook.on_end(self)
        return self.results()

    def extend(self, extra: int, lr_fraction: float, evaluate_at, evaluate,
               tick=None) -> list[dict]:
        """The continuation check (iwgan.metrics.continuation), after :meth:`fit`: train the
        members that finished their budget ``extra`` iterations more at a constant rate of
        ``lr_fraction`` x each one's base rate (the schedule set aside; the moving average
        kept), calling ``evaluate(k, iteration, models)`` at the iterations of
        ``evaluate_at``. Stacked members and single runs alike; no hook runs, so the
        budget's logs, stopping rule and results are left as they were (call it after the
        budget's results are measured and saved: it trains the very networks on);
        ``evaluate`` gets the member's training seconds then as a fourth argument. One dict
        per member: ``continued_status`` (finished, diverged, or why it was not
        continued), ``continued_iterations``, ``continued_diverged_at``,
        ``continued_seconds`` (its share of the continuation's training time) and
        ``models`` (its networks at the end; None where not continued or diverged).
        ``tick(1)`` after every iteration (the grid's progress bar)."""
        if self.world.distributed:
            raise ValueError("the continuation check trains in one process")
        self.schedulers = {}
        for opt in self.members.optimizers.values():
            for group in opt.param_groups:   # MemberAdam scales the other members alike
                group["lr"] = lr_fraction * self.cfg.lr
        going = [k for k in range(self.members.k) if self.status[k] == "finished"]
        out = [{"continued_status": f"not continued ({self.status[k]})",
                "continued_iterations": 0, "continued_diverged_at": math.nan,
                "continued_seconds": 0.0, "models": None} for k in range(self.members.k)]
        for k in going:
            out[k]["continued_status"] = "finished"
        started, start, before = list(going), self.iteration, self.share()
        evaluate_at = set(evaluate_at)
        for it in range(start + 1, start + extra + 1):
            values = self.run_iteration()
            self.iteration = it
            if tick:
                tick(1)
            for k in list(going):
                out[k]["continued_iterations"] = it - start
                if not all(math.isfinite(v) for v in values[k].values()):
                    out[k].update(continued_status="diverged", continued_diverged_at=it)
                    going.remove(k)
            if not going:
                break
            if it in evaluate_at:
                seconds = self.share()
                with self.clock.evaluation():
                    for k in going:
                        evaluate(k, it, self.members.member(k), seconds)
        seconds = self.share() - before
        for k in started:
            out[k]["continued_seconds"] = seconds
        for k in going:
            out[k]["models"] = self.members.member(k)
        return out

    def _bookkeeping(self, k: int, it: int, values: dict) -> None:
        cfg = self.cfgs[k]
        if not all(math.isfinite(v) for v in values.values()):
            self._end_member(k, it, "diverged")
            return
        ending = None
        for hook in self.hooks:
            ending = hook.on_values(self, k, it, values) or ending
        if it % cfg.log_every == 0 or it == cfg.iterations or ending:
            record = {"iteration": it, "wall_time": self.share(), **values}
            self.histories[k].append(record)
            for hook in self.hooks:
                hook.on_log(self, k, record)
        if ending:
            self._end_member(k, it, ending)

    def _end_member(self, k: int, it: int, status: str) -> None:
        self.status[k], self.ended_at[k] = status, it
        if status != "diverged":
            # The members of a stack train on together: keep this one's networks as they
            # are now, as its single run would end.
            self.snapshots[k] = self.members.member(k)
        for hook in self.hooks:
            hook.on_member_end(self, k)

    def member_models(self, k: int) -> Models | None:
        """Member k's networks now, or as it ended (None if it diverged)."""
        if self.status[k] == "diverged":
            return None
        if self.snapshots[k] is not None:
            return self.snapshots[k]
        return self.members.member(k)

    def results(self) -> list[MemberResult]:
        wall = self.share()
        return [MemberResult(cfg=self.cfgs[k], models=self.member_models(k),
                             iterations=self.ended_at[k] or self.iteration,
                             status=self.status[k], diverged_at=(
                                 self.ended_at[k] if self.status[k] == "diverged" else None),
                             wall_time=wall, resumed_from=self.resumed_from,
                             history=self.histories[k],
                             optimizer_state=(self.members.optimizer_state(k)
                                              if self.status[k] == "finished" else None))
                for k in range(self.members.k)]

    # --- checkpoints ------------------------------------------------------------------

    def checkpoint_state(self) -> dict:
        return {"configs": [c.to_dict() for c in self.cfgs], "iteration": self.iteration,
                "train_seconds": self.clock.training_seconds(),
                "members": self.members.state_dict(),
                "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
                "data": self.data.state_dict() if hasattr(self.data, "state_dict") else None,
                "status": self.status, "ended_at": self.ended_at,
                "snapshots": [None if m is None else m.state_dict() for m in self.snapshots],
                "hooks": {type(h).__name__: s for h in self.hooks
                          if (s := h.state_dict()) is not None},
                "histories": self.histories}

    def save_checkpoint(self, path: Path) -> None:
        save_torch(path, self.checkpoint_state())

    def load_checkpoint(self, path: Path) -> float:
        """Continue from ``path``; refused if it was written under other configs. Returns
        the training seconds it held."""
        state = read_checkpoint(path, self.cfgs, self.world.size)
        self.members.load_state_dict(state["members"])
        for k, snapshot in enumerate(state["snapshots"]):
            if snapshot is not None:
                self.snapshots[k] = self.members.member(k)
                self.snapshots[k].load_state_dict(snapshot)
        for n, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][n])
        if state["data"] is not None:
            self.data.load_state_dict(state["data"])
        self.iteration = self.resumed_from = state["iteration"]
        self.status, self.ended_at = state["status"], state["ended_at"]
        saved = state.get("hooks", {})
        for hook in self.hooks:
            if type(hook).__name__ in saved:
                hook.load_state_dict(saved[type(hook).__name__])
        self.histories = state["histories"]
        return state["train_seconds"]


class ResumeError(ValueError):
    pass


# Keys a resumed run may change: how often it writes things down.
RESUMABLE_CHANGES = ("log_every", "checkpoint_every", "sample_every")


def read_checkpoint(path: Path, cfgs, processes: int = 1) -> dict:
    """The trainer checkpoint at ``path``, refused (with the differing keys) if it was
    written under other configs or by a run over another number of processes, or is
    unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = state["configs"]
    except Exception as err:
        raise ResumeError(f"{path}: unreadable checkpoint ({err}); run without --resume to "
                          "start this run over") from err
    if len(saved) != len(cfgs):
        raise ResumeError(f"{path}: the checkpoint holds {len(saved)} member(s), this run "
                          f"has {len(cfgs)}; run without --resume to start it over")
    written_by = state["members"].get("world_size", 1)
    if written_by != processes:
        raise ResumeError(f"{path}: the checkpoint was written by a run over {written_by} "
                          f"process(es), this one has {processes}: resume with torchrun "
                          f"--nproc_per_node {written_by}, or start over without --resume")
    for old, cfg in zip(saved, cfgs):
        now = cfg.to_dict()
        changes = [f"{k} (checkpoint {old.get(k)!r}, now {now.get(k)!r})"
                   for k in sorted(set(old) | set(now))
                   if k not in RESUMABLE_CHANGES and old.get(k) != now.get(k)]
        if changes:
            raise ResumeError(f"cannot resume {cfg.run_id}: its config differs from the "
                              f"checkpoint's ({path}) in: {'; '.join(changes)}. Resume with "
                              "the original values, or run without --resume to start it over "
                              f"(only {', '.join(RESUMABLE_CHANGES)} may change on resume)")
    return state


class Checkpoint(Hook):
    """Write the trainer's state to ``path`` every ``every`` iterations (0: never on the
    way) and at the end."""

    def __init__(self, path: Path, every: int):
        self.path, self.every = Path(path), every

    def on_iteration(self, trainer: Trainer) -> None:
        if self.every and trainer.iteration % self.every == 0:
            trainer.save_checkpoint(self.path)

    def on_end(self, trainer: Trainer) -> None:
        trainer.save_checkpoint(self.path)


class LogTo(Hook):
    """Member k's logged records to ``sinks[k](record)`` (a run directory's log)."""

    def __init__(self, sinks):
        self.sinks = list(sinks)

    def on_log(self, trainer: Trainer, k: int, record: dict) -> None:
        self.sinks[k](record)


class Progress(Hook):
    """``callback(1)`` after every iteration (a tqdm bar's ``update``, a worker's tick),
    and ``callback(n)`` at the start of a run resumed after iteration n."""

    def __init__(self, callback):
        self.callback = callback

    def on_start(self, trainer: Trainer) -> None:
        if trainer.iteration:
            self.callback(trainer.iteration)

    def on_iteration(self, trainer: Trainer) -> None:
        self.callback(1)


class Evaluate(Hook):
    """``fn(k, iteration, models)`` for every live member before the first iteration,
    every ``every`` iterations, at the last, and when a member stops early; ``fn`` must
    draw from generators of its own and leave ``models`` unchanged. Its time is excluded
    from training time."""

    def __init__(self, fn, every: int):
        if every <= 0:
            raise ValueError(f"eval_every must be a positive integer, got {every}")
        self.fn, self.every = fn, every

    def _evaluate(self, trainer: Trainer, members) -> None:
        with trainer.clock.evaluation():
            for k in members:
                self.fn(k, trainer.iteration, trainer.member_models(k))

    def on_start(self, trainer: Trainer) -> None:
        if trainer.iteration == 0:
            self._evaluate(trainer, trainer.live_members())

    def on_member_end(self, trainer: Trainer, k: int) -> None:
        if trainer.status[k] != "diverged":
            self._evaluate(trainer, [k])

    def on_iteration(self, trainer: Trainer) -> None:
        it = trainer.iteration
        if it % self.every == 0 or it == trainer.cfg.iterations:
            self._evaluate(trainer, trainer.live_members())


class StopRule(Hook):
    """Algorithm 1's stopping rule, per member (iwgan.core.duality_gap.stop_rule_met, on
    the logged duality gap and L over the config's ``stop_window``): a member that meets
    it is finished at that iteration ("stopped_early")."""

    def __init__(self, cfgs):
        self.cfgs = list(cfgs)
        self.windows = [{name: deque(maxlen=c.stop_window) for name in STOP_RULE_LOGS}
                        for c in self.cfgs]

    def on_values(self, trainer: Trainer, k: int, it: int, values: dict) -> str | None:
        for name, window in self.windows[k].items():
            window.append(values[name])
        return "stopped_early" if stop_rule_met(self.windows[k], self.cfgs[k]) else None

    def state_dict(self) -> list:
        return [{name: list(w) for name, w in windows.items()} for windows in self.windows]

    def load_state_dict(self, state) -> None:
        for windows, saved in zip(self.windows, state):
            for name, values in saved.items():
                windows[name].extend(values)


def mixture_hooks(cfgs) -> list[Hook]:
    """What mixture runs ask of the trainer beyond the loop: Algorithm 1's stopping rule
    where their configs set ``stop_rule``."""
    return [StopRule(cfgs)] if cfgs[0].stop_rule else []


def train(cfgs, data=None, hooks=(), resume: Path | None = None) -> list[MemberResult]:
    """Train mixture runs ``cfgs`` (a config or a list of configs of one method) on their
    mixtures (or on ``data``), with :func:`mixture_hooks`, and return one
    :class:`MemberResult` per config."""
    if not isinstance(cfgs, (list, tuple)):
        cfgs = [cfgs]
    data = MixtureBatches(cfgs) if data is None else data
    return Trainer(cfgs, data, [*hooks, *mixture_hooks(cfgs)], resume).fit()
