"""The members of one training run: K configs of one method trained as one model.

K = 1 is a single run: the method's own modules, its loss called directly. K > 1 stacks
the members with ``torch.func``, as PyTorch's model-ensembling recipe does: the
members' parameters are stacked along a new first dimension (``stack_module_state``),
and every loss of the method file, written for one member, runs on all of them at once
as ``vmap(functional_call(model, member's parameters, batch))``. The losses (K,) are
summed before the backward pass, so each member's gradient is its own loss's gradient;
Adam is element-wise, so one Adam on the stacked tensors is K independent Adams. A
member therefore *is* its single run, up to float rounding:

- initialisation: member k is built by the method's own ``build`` right after
  ``torch.manual_seed(seed_k)``, exactly as a single run is, and stacked as it is;
- random draws: each member owns a generator (iwgan.engine.seeds) from which the trainer
  draws its data, latent and loss draws in a single run's order;
- rounding: a vmapped matmul or reduction rounds in other places than its unbatched
  form, so trajectories drift apart in the last bits and GAN training amplifies that
  (tests/engine/test_stacking.py states the tolerances; in float64 they agree to 1e-9).

Members may differ in seed, mixture and preset, and in the settings of
:data:`SETTING_FIELDS` (learning rate, Adam's betas, the penalties' weights, the moving
average's decay: a tuning search or two protocols in one stack), never in shapes, step
counts or anything else (:func:`check_stackable`). Where members differ in a setting, the
losses read it as a per-member value (``cfg.lambda_gp`` is then a tensor under vmap, one
value per member) and Adam takes it per member (iwgan.engine.optim.MemberAdam); where
they share it, the stack runs exactly the code it ran before members could differ.
Why torch.func and not hand-stacked layers, with the measurements: docs/stacking.md.
When stacking is faster than one run after another: :func:`stacking_helps`.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch.func import functional_call, stack_module_state, vmap

from iwgan.core.methods import DRAWS, Models, adam, descend, get_method
from iwgan.engine.devices import check_device, is_cuda
from iwgan.engine.distributed import ONE, World, average_gradients
from iwgan.engine.optim import MemberAdam
from iwgan.engine.seeds import training_generator

# Fields in which the members of one stack may differ: same shapes, different data.
MEMBER_FIELDS = ("seed", "mixture", "preset")
# Settings in which the members of one stack may differ (same shapes and step counts):
# what the losses read (LOSS_SETTINGS), Adam's (lr, betas) and the moving average's decay.
LOSS_SETTINGS = ("lambda_gp", "lambda_mmd")
SETTING_FIELDS = ("lr", "beta1", "beta2", *LOSS_SETTINGS, "ema")
STACK_MODES = ("auto", "on", "off")
# CPU: stack when a member's per-step matmul work (width^2 x batch size) is at most this
# multiple of the quick profile's (0.25^2 x 64): measured per-member speed-ups over one
# run at a time 1.3-2.5x at the quick width (K = 4..30), 1.2-1.6x at half width (4x the
# work; K = 4, 15), none at the paper width (64x; 0.96-1.07x at K = 2, 4): docs/stacking.md.
CPU_WORK_LIMIT = 4.0
QUICK_WORK = 0.25 ** 2 * 64
# The networks whose weights the moving average (cfg.ema) follows: the ones evaluated.
AVERAGED = ("generator.", "encoder.")


def check_stackable(cfgs) -> None:
    """Refuse members that cannot share one model, naming what differs: anything but
    :data:`MEMBER_FIELDS` and :data:`SETTING_FIELDS`."""
    if not cfgs:
        raise ValueError("a stack needs at least one member")
    ids = [c.run_id for c in cfgs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"the members of a stack must be distinct runs, got {ids}")
    first, free = cfgs[0], MEMBER_FIELDS + SETTING_FIELDS
    shared = {k: v for k, v in first.to_dict().items() if k not in free}
    for c in cfgs[1:]:
        if type(c) is not type(first):
            raise ValueError("the members of a stack must be runs of one kind")
        other = {k: v for k, v in c.to_dict().items() if k not in free}
        differ = [f"{k} ({shared.get(k)!r} vs {other.get(k)!r})"
                  for k in sorted(set(shared) | set(other)) if shared.get(k) != other.get(k)]
        if differ:
            raise ValueError("the members of a stack share everything but "
                             f"{', '.join(free)}; these differ: {', '.join(differ)}")


def why_not_stackable(cfg) -> str | None:
    """Why K > 1 members of ``cfg`` cannot be stacked, or None."""
    with torch.random.fork_rng(devices=[]):
        models = get_method(cfg.method).build(cfg)
    if any(True for _ in models.buffers()):
        return (f"the {cfg.arch!r} networks keep running statistics (batch norm), which a "
                "stacked model cannot update per member; train them one run at a time")
    return None


def stacking_helps(cfg, k: int) -> bool:
    """Whether K members of ``cfg`` train faster as one stacked model than one by one."""
    if k < 2 or cfg.arch != "mixture":
        return False
    if is_cuda(cfg.device):
        return True
    return cfg.width ** 2 * cfg.batch_size <= CPU_WORK_LIMIT * QUICK_WORK


class Members:
    """K configs of one method as one trainable model on the configs' device; ``step``
    runs one phase of the method on every member and returns the (K,) logs. Under a
    torchrun launch (``world``, iwgan.engine.distributed) a single run is data-parallel:
    this process trains on its shard of every global batch and gradients are averaged
    over the processes before each step."""

    def __init__(self, cfgs, world: World = ONE, device: str | None = None):
        cfgs = list(cfgs)
        check_stackable(cfgs)
        self.cfgs, self.cfg, self.k = cfgs, cfgs[0], len(cfgs)
        self.world = world
        if world.distributed and self.k > 1:
            raise ValueError("a stacked model trains in one process; data parallelism "
                             "(torchrun) takes single runs")
        self.method = get_method(self.cfg.method)
        self.device = check_device(device or self.cfg.device)
        if self.k > 1 and (reason := why_not_stackable(self.cfg)):
            raise ValueError(reason)
        built, self.generators = [], []
        for c in cfgs:
            torch.manual_seed(c.seed)             # as a single run does, right before build
            built.append(self.method.build(c))
            self.generators.append(training_generator(c.seed, self.device))
        self.template = built[0]
        if self.k == 1:
            self.models = built[0].to(self.device)
            self.params = dict(self.models.named_parameters())
        else:
            stacked, _ = stack_module_state(built)
            self.params = {n: p.detach().to(self.device).requires_grad_()
                           for n, p in stacked.items()}
            self.base = copy.deepcopy(built[0]).to("meta")
        # The settings the members differ in (empty: the stack runs as one setting).
        self.varying = {f: [getattr(c, f) for c in cfgs] for f in SETTING_FIELDS
                        if len({getattr(c, f) for c in cfgs}) > 1}
        # The moving average of G's and Q's weights (cfg.ema; empty without one).
        self.averaged = {n: p.detach().clone() for n, p in self.params.items()
                         if any(c.ema for c in cfgs) and n.startswith(AVERAGED)}
        self._decay_weights: dict = {}
        self.groups = {name: [self.params[n] for n in self.template.parameter_names(name)]
                       for name in self.template.optimized}
        if self.k == 1:
            self.optimizers = {name: adam(params, self.cfg)
                               for name, params in self.groups.items()}
        else:
            self.optimizers = {name: MemberAdam(params, [c.lr for c in cfgs],
                                                [c.beta1 for c in cfgs],
                                                [c.beta2 for c in cfgs], impl=self.cfg.adam)
                               for name, params in self.groups.items()}
        self._vmapped = {}

    # --- one phase ---------------------------------------------------------------------

    def draw(self, phase, data) -> tuple[list, list, list]:
        """Every member's draws for one step of ``phase``, from its own generator, in a
        single run's order: the data batch, the latent batch, then the loss's draws."""
        b, zd, dev = self.cfg.batch_size, self.cfg.z_dim, self.device
        xs, zs, noises = [], [], []
        for k, g in enumerate(self.generators):
            x = data.sample(k, b, g)
            xs.append(x)
            zs.append(torch.randn(b, zd, generator=g, device=dev))
            noises.append({name: DRAWS[name](b, x.shape[1:], zd, g, dev)
                           for name in phase.draws})
        if self.world.distributed:   # every process drew the global batch: its rows
            rows = self.world.shard(b)
            xs, zs = [x[rows] for x in xs], [z[rows] for z in zs]
            noises = [{name: v[rows] for name, v in n.items()} for n in noises]
        return xs, zs, noises

    def losses(self, phase, xs, zs, noises):
        """(loss, logs) of ``phase`` for every member: shapes (K,), or () when K = 1."""
        if self.k == 1:
            return phase.loss(self.models, xs[0], zs[0], self.cfg, noises[0])
        if phase.loss not in self._vmapped:
            base, cfg, fn = self.base, self.cfg, phase.loss
            self._vmapped[fn] = vmap(
                lambda params, x, z, noise, settings: functional_call(
                    base, params, (fn, x, z, MemberSettings(cfg, settings) if settings else cfg,
                                   noise)),
                randomness="error")
        noise = {name: torch.stack([n[name] for n in noises]) for name in phase.draws}
        return self._vmapped[phase.loss](self.params, torch.stack(xs), torch.stack(zs), noise,
                                         self.loss_settings())

    def loss_settings(self) -> dict:
        """The settings of :data:`LOSS_SETTINGS` the members differ in, as (K,) tensors of
        the parameters' dtype (one value per member under vmap); {} when they share them."""
        if not hasattr(self, "_loss_settings"):
            like = next(iter(self.params.values()))
            self._loss_settings = {f: torch.tensor(v, dtype=like.dtype, device=like.device)
                                   for f, v in self.varying.items() if f in LOSS_SETTINGS}
        return self._loss_settings

    def step(self, phase, xs, zs, noises) -> dict:
        """One optimiser step of ``phase`` on every member; its logs, detached: shapes
        (K,), or () when K = 1."""
        loss, logs = self.losses(phase, xs, zs, noises)
        descend(self.optimizers[phase.optimizer], loss if self.k == 1 else loss.sum(),
                self.groups[phase.optimizer],
                sync=average_gradients if self.world.distributed else None)
        return {k: v.detach() for k, v in logs.items()}

    def update_average(self) -> None:
        """One step of the moving average after an outer iteration:
        average <- ema * average + (1 - ema) * weights, for every member at once."""
        with torch.no_grad():
            for name, average in self.averaged.items():
                average.lerp_(self.params[name].detach(), self._decay_weight(average))

    def _decay_weight(self, average):
        """1 - ema: a float where the members share it, else a (K, 1, ...) tensor."""
        if "ema" not in self.varying:
            return 1.0 - self.cfg.ema
        key = (average.dim(), average.dtype)
        if key not in self._decay_weights:
            self._decay_weights[key] = torch.tensor(
                [1.0 - c.ema for c in self.cfgs], dtype=average.dtype,
                device=average.device).reshape((self.k,) + (1,) * (average.dim() - 1))
        return self._decay_weights[key]

    # --- members as single runs --------------------------------------------------------

    def member(self, k: int) -> Models:
        """Member k as the Models its single run holds (K = 1 without a moving average:
        the live modules), with the averaged weights of G and Q where cfg.ema is set
        (buffers such as batch-norm statistics stay the live ones)."""
        averaged = self.averaged if self.cfgs[k].ema else {}
        if self.k == 1 and not averaged:
            return self.models
        with torch.random.fork_rng(devices=[]):
            fresh = self.method.build(self.cfgs[k]).to(self.device)
        if self.k == 1:
            fresh.load_state_dict(self.models.state_dict())
        with torch.no_grad():
            for name, p in fresh.named_parameters():
                source = averaged.get(name, self.params[name])
                p.copy_(source if self.k == 1 else source[k])
        return fresh

    def optimizer_state(self, k: int) -> dict:
        """Member k's optimiser states, as its single run's optimisers would hold them
        (one Adam state dict per optimiser; stacked moments sliced to the member's)."""
        out = {}
        for name, opt in self.optimizers.items():
            state = opt.state_dict()
            if self.k > 1:
                groups = [{**g, **opt.member_hyperparameters(k)} for g in state["param_groups"]]
                state = {"param_groups": groups, "state": {
                    idx: {key: (v[k].clone() if torch.is_tensor(v) and v.dim() > 0 else v)
                          for key, v in s.items()}
                    for idx, s in state["state"].items()}}
            out[name] = state
        return out

    # --- the whole stack, for checkpoints ----------------------------------------------

    def state_dict(self) -> dict:
        # K = 1: the modules' own state dict, buffers (batch-norm statistics) included.
        tensors = self.models.state_dict() if self.k == 1 else self.params
        return {"k": self.k, "world_size": self.world.size,
                "params": {n: p.detach().clone() for n, p in tensors.items()},
                "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "generators": [g.get_state() for g in self.generators],
                "averaged": {n: a.clone() for n, a in self.averaged.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state["k"] != self.k or not set(self.params) <= set(state["params"]):
            raise ValueError(f"the checkpoint holds {state['k']} member(s) of other networks; "
                             f"this run has {self.k}")
        if self.k == 1:
            self.models.load_state_dict(state["params"])
        else:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(state["params"][n])
        for n, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][n])
        for g, s in zip(self.generators, state["generators"]):
            g.set_state(s)
        with torch.no_grad():
            for n, average in self.averaged.items():
                average.copy_(state["averaged"][n])


class MemberSettings:
    """A run's config as one member's loss reads it inside a stack: the settings the
    members differ in come from ``values`` (under vmap, this member's value), every other
    field from ``cfg``."""

    def __init__(self, cfg, values: dict):
        self._cfg, self._values = cfg, values

    def __getattr__(self, name):
        values = self.__dict__["_values"]
        return values[name] if name in values else getattr(self.__dict__["_cfg"], name)


def plan_stacks(configs, mode: str = "auto", max_members: int | None = None,
                share_settings: bool = False) -> list[tuple]:
    """The grid's units of work, each a tuple of configs trained as one model. ``off``:
    one run per config; ``on``: every group of configs that can share a model (same
    method and settings, any seed, mixture and preset) stacked, refusing what cannot be,
    with the reason; ``auto``: stacked where :func:`stacking_helps`, one by one elsewhere.
    ``share_settings``: configs that differ only in :data:`SETTING_FIELDS` as well (a
    tuning search's candidates) share a group too. ``max_members`` splits larger groups
    (so that ``--jobs`` processes share the work). Groups keep their first config's
    order."""
    if mode not in STACK_MODES:
        raise ValueError(f"stack mode must be one of {', '.join(STACK_MODES)}, got {mode!r}")
    if max_members is not None and max_members <= 0:
        raise ValueError(f"max_members must be a positive integer, got {max_members}")
    groups: dict = {}
    free = MEMBER_FIELDS + (SETTING_FIELDS if share_settings else ())
    for c in configs:
        key = dataclasses.replace(c, **{f: getattr(configs[0], f) for f in free
                                        if hasattr(c, f)}).hash()
        groups.setdefault(key, []).append(c)
    units = []
    for group in groups.values():
        if mode == "on" and len(group) > 1 and (reason := why_not_stackable(group[0])):
            raise ValueError(f"{group[0].run_id}: {reason}")
        if mode == "on" or (mode == "auto" and stacking_helps(group[0], len(group))):
            size = max_members or len(group)
            units.extend(tuple(group[i:i + size]) for i in range(0, len(group), size))
        else:
            units.extend((c,) for c in group)
    return units
