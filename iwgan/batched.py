"""K seeds of one mixture run trained as one model with stacked weights.

Every network of the K members is stacked layer by layer: a :class:`StackedLinear` holds
the members' weights as (K, out, in) and their biases as (K, 1, out) and computes
``baddbmm(bias, x, weight^T)`` on inputs (K, B, in), one batched matmul for K matmuls.
The losses are computed per member, shape (K,), and summed before the backward pass, so
each member's gradient is its own loss's gradient; Adam is element-wise, so one Adam on
the stacked tensors is K independent Adams. Each member therefore *is* its sequential
run (:func:`iwgan.training.train` with its seed), up to float rounding:

- initialisation: member k is built by the method's own ``build`` right after
  ``torch.manual_seed(seed_k)``, exactly as ``train`` builds it, and its weights are
  stacked as they are;
- random draws: each member owns a ``torch.Generator`` that starts from the state the
  global generator has after its build, and every draw of ``train``'s stream (the data
  batch, the latent batch, the gradient penalty's interpolation weights, ALI's
  stochastic-encoder noise) is taken from it, in ``train``'s order;
- the schedule is the method's own ``phases(cfg)``; only the step bodies are re-written
  here for (K, B, ...) tensors, line for line after the method's file (the loss helpers
  of :mod:`iwgan.losses` flatten from dim 1, so they get per-member twins below).

Rounding: a batched matmul, a reduction over (K, B) and a batched ``cdist`` round in
other places than their unbatched forms, so the trajectories drift apart in the last
bits and GAN training amplifies that over iterations. ``tests/test_batched.py`` states the
tolerance.

When it helps (:func:`batching_helps`, the sessions' default ``--batch-seeds auto``): a
cell of K >= 2 seeds is batched on CUDA always (expected: the MLPs are launch-bound
there; not yet measured, docs/throughput.md), and on CPU when a member's step is small
enough to be bound by per-op overhead rather than arithmetic. Measured on the suite's
2-core CPU, one thread, K = 3 against 3 sequential runs: width 0.25 / batch 64 (the
quick profile) 1.47-1.88x over the four methods; width 0.5 1.04-1.05x; width 0.75
0.95-1.04x; paper width (1.0, batch 256) 0.88-1.0x (results/throughput/cpu.json,
docs/throughput.md). K = 1 batched is 0.90-0.96x, so a
single seed always runs sequentially.

A diverged member is recorded at the iteration its loss became non-finite, as
``train`` would raise there; its NaNs stay in its own slices (no operation mixes
members), so the others train on unaffected.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines import ali, alpha_gan, wgan_gp
from iwgan import iwgan
from iwgan.losses import IMQ_SCALES
from iwgan.methods import Models, get_method, resolve_options, update
from iwgan.mixtures import get_mixture
from iwgan.training import TrainingClock, configure_torch

# --- stacked networks -------------------------------------------------------------------


class StackedLinear(nn.Module):
    """K nn.Linear layers of the same shape as one: x (K, B, in) -> (K, B, out)."""

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]).clone())
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers])
                                 .unsqueeze(1).clone())

    def forward(self, x):
        return torch.baddbmm(self.bias, x, self.weight.transpose(1, 2))

    def member(self, k: int) -> dict:
        return {"weight": self.weight[k], "bias": self.bias[k, 0]}


def stack_sequential(nets: list[nn.Sequential]) -> nn.Sequential:
    """One nn.Sequential whose layer i stacks the members' layers i (Linear and ReLU only:
    the mixture MLPs of Appendix D1)."""
    layers: list[nn.Module] = []
    for i, first in enumerate(nets[0]):
        if isinstance(first, nn.Linear):
            layers.append(StackedLinear([net[i] for net in nets]))
        elif isinstance(first, nn.ReLU):
            layers.append(nn.ReLU())
        else:
            raise ValueError(f"batched seeds stack the mixture MLPs (Linear and ReLU layers) "
                             f"only, not {type(first).__name__}; train image networks one "
                             "seed at a time")
    return nn.Sequential(*layers)


def _stacked_param(stacked: nn.Sequential, name: str, k: int) -> torch.Tensor:
    """Member k's view of the stacked parameter that holds its parameter ``name``."""
    index, kind = name.split(".")
    return stacked[int(index)].member(k)[kind]


def stack_models(members: list[Models]) -> Models:
    """The members' networks stacked, with one optimiser per member optimiser, over the
    stacked parameters in the members' parameter order (so Adam's state lines up)."""
    first = members[0]
    stacked = {name: stack_sequential([m.modules()[name] for m in members])
               for name in first.modules()}
    owner = {id(p): (name, pname) for name, mod in first.modules().items()
             for pname, p in mod.named_parameters()}
    by_name = {name: dict(mod.named_parameters()) for name, mod in stacked.items()}
    optimizers = {}
    for key, opt in first.optimizers.items():
        params = [by_name[owner[id(p)][0]][owner[id(p)][1]]
                  for group in opt.param_groups for p in group["params"]]
        optimizers[key] = type(opt)(params, **opt.defaults)
    named = {k: stacked.get(k) for k in ("generator", "critic", "encoder")}
    return Models(**named, extra={k: v for k, v in stacked.items() if k in first.extra},
                  optimizers=optimizers)


def unstack_member(stacked: Models, member: Models, k: int) -> Models:
    """Copy member k's weights and Adam state out of ``stacked`` into ``member`` (a
    freshly built Models of the method): a sequential Models, for evaluation and
    checkpoints exactly as a sequential run's."""
    smods, mmods = stacked.modules(), member.modules()
    with torch.no_grad():
        for name, mod in mmods.items():
            for pname, p in mod.named_parameters():
                p.copy_(_stacked_param(smods[name], pname, k))
    pairs = {}
    for name, mod in mmods.items():
        for pname, p in mod.named_parameters():
            pairs[id(p)] = (name, pname)
    for key, opt in member.optimizers.items():
        sopt = stacked.optimizers[key]
        sparams = [p for g in sopt.param_groups for p in g["params"]]
        mparams = [p for g in opt.param_groups for p in g["params"]]
        for sp, mp in zip(sparams, mparams):
            if sp not in sopt.state:
                continue
            state = {}
            for sk, sv in sopt.state[sp].items():
                if torch.is_tensor(sv) and sv.dim() > 0 and sv.shape == sp.shape:
                    name, pname = pairs[id(mp)]
                    idx, kind = pname.split(".")
                    state[sk] = (sv[k, 0] if kind == "bias" else sv[k]).clone()
                else:
                    state[sk] = sv.clone() if torch.is_tensor(sv) else sv
            opt.state[mp] = state
    return member


# --- per-member losses on (K, B, ...) tensors ---------------------------------------------


def batch_mean(t: torch.Tensor) -> torch.Tensor:
    """Per-member mean over everything but the member dim: (K, B, ...) -> (K,)."""
    return t.flatten(1).mean(dim=1)


def gradient_penalty(critic, real, fake, eps) -> torch.Tensor:
    """iwgan.losses.gradient_penalty per member; ``eps`` (K, B, 1) is drawn by the caller
    from each member's generator, as the sequential run draws it inside the step."""
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(2).norm(dim=2) - 1) ** 2).mean(dim=1)


def mmd_imq(x, y, scales=IMQ_SCALES, prior_var: float = 1.0) -> torch.Tensor:
    """iwgan.losses.mmd_imq per member: x (K, n, d), y (K, m, d) -> (K,)."""
    n, m, dim = x.shape[1], y.shape[1], x.shape[2]
    d_xx = torch.cdist(x, x).pow(2)
    d_yy = torch.cdist(y, y).pow(2)
    d_xy = torch.cdist(x, y).pow(2)
    total = x.new_zeros(x.shape[0])
    for scale in scales:
        c = 2 * dim * prior_var * scale
        within_x = ((c / (c + d_xx)).sum(dim=(1, 2)) - n) / (n * (n - 1))
        within_y = ((c / (c + d_yy)).sum(dim=(1, 2)) - m) / (m * (m - 1))
        total = total + within_x + within_y - 2 * (c / (c + d_xy)).mean(dim=(1, 2))
    return total


def reconstruction_error(x, x_rec) -> torch.Tensor:
    return (x - x_rec).flatten(2).norm(dim=2)


# --- the methods' steps, per member (after iwgan/iwgan.py and baselines/*.py) -------------
# Each takes the draws of its step (``d``) from the caller; it sums the per-member losses
# for the backward pass and logs the (K,) per-member values.


def iwgan_critic_step(m: Models, x, z, cfg, d) -> dict:
    with torch.no_grad():
        fake = m.generator(z)
        recon = m.generator(m.encoder(x))
    gp = gradient_penalty(m.critic, x, fake, d["gp_eps"])
    loss = batch_mean(m.critic(fake)) - batch_mean(m.critic(recon)) + cfg.lambda_gp * gp
    update(m.optimizers["critic"], loss.sum())
    return {"critic_loss": loss.detach(), "gradient_penalty": gp.detach()}


def iwgan_generator_step(m: Models, x, z, cfg, d) -> dict:
    code = m.encoder(x)
    fake = m.generator(z)
    reconstruction = reconstruction_error(x, m.generator(code)).mean(dim=1)
    f_fake = batch_mean(m.critic(fake))
    objective = reconstruction + batch_mean(m.critic(m.generator(code))) - f_fake
    mmd = mmd_imq(code, z)
    update(m.optimizers["generator"], (objective + cfg.lambda_mmd * mmd).sum())
    with torch.no_grad():
        dual = batch_mean(m.critic(x)) - f_fake.detach()
    return {"objective_L": objective.detach(), "reconstruction": reconstruction.detach(),
            "mmd": mmd.detach(), "dual_gap": reconstruction.detach() - dual}


def wgan_gp_critic_step(m: Models, x, z, cfg, d) -> dict:
    with torch.no_grad():
        fake = m.generator(z)
    gp = gradient_penalty(m.critic, x, fake, d["gp_eps"])
    w_estimate = batch_mean(m.critic(x)) - batch_mean(m.critic(fake))
    loss = -w_estimate + cfg.lambda_gp * gp
    update(m.optimizers["critic"], loss.sum())
    return {"critic_loss": loss.detach(), "gradient_penalty": gp.detach(),
            "w_estimate": w_estimate.detach()}


def wgan_gp_generator_step(m: Models, x, z, cfg, d) -> dict:
    loss = -batch_mean(m.critic(m.generator(z)))
    update(m.optimizers["generator"], loss.sum())
    return {"generator_loss": loss.detach()}


def _ali_code(m: Models, x, d):
    if "log_std" not in m.extra:
        return m.encoder(x)
    hidden = m.encoder[:-1](x)
    mean = m.encoder[-1](hidden)
    return mean + m.extra["log_std"](hidden).exp() * d["code_noise"]


def ali_critic_step(m: Models, x, z, cfg, d) -> dict:
    with torch.no_grad():
        fake = m.generator(z)
        x_code = _ali_code(m, x, d)
    d_real, d_fake = ali.discriminator(m, x, x_code), ali.discriminator(m, fake, z)
    loss = batch_mean(F.softplus(-d_real)) + batch_mean(F.softplus(d_fake))
    update(m.optimizers["critic"], loss.sum())
    return {"discriminator_loss": loss.detach(),
            "d_real": batch_mean(torch.sigmoid(d_real)).detach(),
            "d_fake": batch_mean(torch.sigmoid(d_fake)).detach()}


def ali_generator_step(m: Models, x, z, cfg, d) -> dict:
    d_real = ali.discriminator(m, x, _ali_code(m, x, d))
    d_fake = ali.discriminator(m, m.generator(z), z)
    loss = batch_mean(F.softplus(d_real)) + batch_mean(F.softplus(-d_fake))
    update(m.optimizers["generator"], loss.sum())
    return {"generator_loss": loss.detach()}


def _adversarial(logits, kind: str):
    return -batch_mean(logits) if kind == "density_ratio" else batch_mean(F.softplus(-logits))


def alpha_gan_critic_step(m: Models, x, z, cfg, d) -> dict:
    with torch.no_grad():
        code = m.encoder(x)
        recon = m.generator(code)
        fake = m.generator(z)
    d_loss = (batch_mean(F.softplus(-m.critic(x))) + batch_mean(F.softplus(m.critic(recon)))
              + batch_mean(F.softplus(m.critic(fake))))
    c_loss = (batch_mean(F.softplus(-m.extra["code_critic"](z)))
              + batch_mean(F.softplus(m.extra["code_critic"](code))))
    update(m.optimizers["critic"], (d_loss + c_loss).sum())
    return {"discriminator_loss": d_loss.detach(), "code_discriminator_loss": c_loss.detach()}


def alpha_gan_generator_step(m: Models, x, z, cfg, d) -> dict:
    options = resolve_options(cfg.method, cfg.options)
    kind = options["adversarial_loss"]
    code = m.encoder(x)
    reconstruction = (x - m.generator(code)).flatten(2).abs().sum(dim=2).mean(dim=1)
    rec_term = options["lambda_rec"] * reconstruction
    g_adv = (_adversarial(m.critic(m.generator(code.detach())), kind)
             + _adversarial(m.critic(m.generator(z)), kind))
    q_adv = _adversarial(m.extra["code_critic"](code), kind)
    update(m.optimizers["generator"], (rec_term + g_adv + q_adv).sum())
    return {"reconstruction": reconstruction.detach(),
            "generator_loss": (rec_term + g_adv).detach(),
            "encoder_loss": (rec_term + q_adv).detach()}


# The sequential step -> its batched twin and the draws it takes inside the step (in
# the order the sequential step takes them, after the loop's data and latent draws).
BATCHED_STEPS = {
    iwgan.critic_step: (iwgan_critic_step, ("gp_eps",)),
    iwgan.generator_step: (iwgan_generator_step, ()),
    wgan_gp.critic_step: (wgan_gp_critic_step, ("gp_eps",)),
    wgan_gp.generator_step: (wgan_gp_generator_step, ()),
    ali.critic_step: (ali_critic_step, ("code_noise",)),
    ali.generator_step: (ali_generator_step, ("code_noise",)),
    alpha_gan.critic_step: (alpha_gan_critic_step, ()),
    alpha_gan.generator_step: (alpha_gan_generator_step, ()),
}
BATCHED_METHODS = ("iwgan", "wgan_gp", "ali", "alpha_gan")


# --- the loop ------------------------------------------------------------------------------


# CPU: batch when a member's per-step matmul work (width^2 x batch size) is at most this
# multiple of the quick profile's (0.25^2 x 64); measured speed-ups in the module docstring.
CPU_WORK_LIMIT = 2.0
QUICK_WORK = 0.25 ** 2 * 64
BATCH_MODES = ("auto", "on", "off")


def batchable(cfg) -> str | None:
    """Why ``cfg`` cannot be batched, or None."""
    try:
        check_batchable(cfg)
    except ValueError as err:
        return str(err)
    return None


def batching_helps(cfg, k: int) -> bool:
    """Whether K seeds of ``cfg`` train faster as one batched model than one by one."""
    if k < 2 or batchable(cfg) is not None:
        return False
    if cfg.device.startswith("cuda"):
        return True
    return cfg.width ** 2 * cfg.batch_size <= CPU_WORK_LIMIT * QUICK_WORK


def check_batchable(cfg) -> None:
    """Refuse what a batched run cannot reproduce, with the reason."""
    if cfg.method not in BATCHED_METHODS:
        raise ValueError(f"batched seeds support {', '.join(BATCHED_METHODS)}, not "
                         f"{cfg.method!r}; run it with --batch-seeds off")
    if cfg.arch != "mixture":
        raise ValueError(f"batched seeds stack the mixture MLPs only, not the {cfg.arch!r} "
                         "networks; run image experiments one seed at a time")
    if cfg.stop_rule:
        raise ValueError("batched seeds cannot be combined with --stop-rule: members would "
                         "stop at different iterations; run the stopping rule with "
                         "--batch-seeds off")


@dataclass
class BatchedResult:
    models: Models                          # the stacked networks
    members: list[Models]                   # each member as a sequential Models
    iterations: int                         # iterations the batch ran
    diverged_at: list[int | None]           # per member: iteration of its first NaN/inf
    wall_time: float = 0.0                  # each member's share: the batch's / K
    histories: list[list] = field(default_factory=list)


class BatchedRun:
    """K seeds of ``cfg`` (the seed field is ignored) as one stacked model; ``step()``
    runs one outer iteration and returns the (n_logs, K) logs as floats."""

    def __init__(self, cfg, seeds, device: str = "cpu"):
        check_batchable(cfg)
        if len(set(seeds)) != len(seeds) or not seeds:
            raise ValueError(f"batched seeds must be distinct and non-empty, got {seeds}")
        self.cfg, self.seeds, self.device = cfg, list(seeds), device
        self.method = get_method(cfg.method)
        self.mixture = get_mixture(cfg.mixture, cfg.preset)
        self.centres = torch.as_tensor(self.mixture.centres, dtype=torch.float32)
        self.configs = [dataclasses.replace(cfg, seed=s) for s in self.seeds]
        members, self.generators = [], []
        for c in self.configs:
            torch.manual_seed(c.seed)           # as train() does, right before build
            members.append(self.method.build(c))
            self.generators.append(torch.Generator().set_state(torch.get_rng_state()))
        self.models = stack_models(members)
        if device != "cpu":
            for mod in self.models.modules().values():
                mod.to(device)
        # ALI draws its encoder noise only with the stochastic encoder.
        drop = () if "log_std" in self.models.extra else ("code_noise",)
        self.steps = [(fn, tuple(e for e in extras if e not in drop), count)
                      for fn, extras, count in (
                          (*BATCHED_STEPS[step], count) for step, count in self.method.phases(cfg))]

    def draw(self, extras) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Each member's draws for one step from its own generator, in train()'s order:
        the data batch (Mixture.sample), the latent batch, then the step's own draws."""
        b, zd = self.cfg.batch_size, self.cfg.z_dim
        xs, zs, ds = [], [], {name: [] for name in extras}
        for g in self.generators:
            xs.append(self.mixture.sample(b, generator=g))
            zs.append(torch.randn(b, zd, generator=g))
            for name in extras:
                ds[name].append(torch.rand(b, 1, generator=g) if name == "gp_eps"
                                else torch.randn(b, zd, generator=g))
        dev = self.device
        return (torch.stack(xs).to(dev), torch.stack(zs).to(dev),
                {k: torch.stack(v).to(dev) for k, v in ds.items()})

    def step(self) -> dict:
        """One outer iteration; the logs as detached (K,) tensors, unsynchronised."""
        logs = {}
        for fn, extras, count in self.steps:
            for _ in range(count):
                x, z, d = self.draw(extras)
                logs.update(fn(self.models, x, z, self.cfg, d))
        return logs

    def member(self, k: int) -> Models:
        """Member k as the sequential Models its own run would hold."""
        with torch.random.fork_rng(devices=[]):
            fresh = self.method.build(self.configs[k])
        if self.device != "cpu":
            self.models_to("cpu")
        try:
            return unstack_member(self.models, fresh, k)
        finally:
            if self.device != "cpu":
                self.models_to(self.device)

    def models_to(self, device: str) -> None:
        for mod in self.models.modules().values():
            mod.to(device)
        for opt in self.models.optimizers.values():
            for state in opt.state.values():
                for key, v in state.items():
                    if torch.is_tensor(v) and v.dim() > 0:
                        state[key] = v.to(device)


def train_batched(cfg, seeds, on_log=None, progress=None, on_eval=None,
                  eval_every=0) -> BatchedResult:
    """train() for K seeds at once. ``on_log(k, record)`` gets member k's records (as
    train's ``on_log``); ``progress(n)`` every finished iteration of the batch;
    ``on_eval(k, iteration, models)``, if given, member k's models (a sequential Models)
    at iteration 0, every ``eval_every`` and at the last, as train's ``on_eval``.

    Times are each member's share: the batch's training wall time (evaluation excluded,
    as in train) divided by K, in the records' ``wall_time`` and in ``wall_time``."""
    configure_torch(cfg)
    run = BatchedRun(cfg, seeds)
    k_all = len(run.seeds)
    diverged: list[int | None] = [None] * k_all
    histories: list[list] = [[] for _ in range(k_all)]
    result = BatchedResult(models=run.models, members=[], iterations=0, diverged_at=diverged,
                           histories=histories)
    clock = TrainingClock(on_eval, eval_every)

    def evaluate(it):
        with clock.evaluation():
            for k in range(k_all):
                if diverged[k] is None:
                    on_eval(k, it, run.member(k))

    clock.start()
    if on_eval is not None:
        evaluate(0)
    for it in range(1, cfg.iterations + 1):
        logs = run.step()
        rows = torch.stack(list(logs.values())).tolist()  # (n_logs, K): one sync
        share = clock.training_seconds() / k_all
        for k in range(k_all):
            if diverged[k] is not None:
                continue
            values = {name: row[k] for name, row in zip(logs, rows)}
            if not all(math.isfinite(v) for v in values.values()):
                diverged[k] = it
                continue
            if it % cfg.log_every == 0 or it == cfg.iterations:
                record = {"iteration": it, "wall_time": share, **values}
                histories[k].append(record)
                if on_log:
                    on_log(k, record)
        result.iterations = it
        if progress:
            progress(1)
        if all(d is not None for d in diverged):
            break
        if on_eval is not None and (it % eval_every == 0 or it == cfg.iterations):
            evaluate(it)
    result.wall_time = clock.training_seconds() / k_all
    result.members = [run.member(k) for k in range(k_all)]
    return result


# --- one results row per member, as iwgan.runs.run_one writes them -------------------------


@dataclass(frozen=True)
class SeedGroup:
    """A unit of a grid: the configs of one cell that differ only in seed, trained as one
    batched model, or a single config trained sequentially."""

    configs: tuple

    @property
    def batched(self) -> bool:
        return len(self.configs) > 1

    @property
    def run_id(self) -> str:
        first = self.configs[0]
        if not self.batched:
            return first.run_id
        seeds = ",".join(str(c.seed) for c in self.configs)
        return f"{first.profile}-{first.preset}-{first.mixture}-{first.method}-seeds{seeds}"

    @property
    def iterations(self) -> int:
        return self.configs[0].iterations


def plan_groups(configs, mode: str = "auto") -> list[SeedGroup]:
    """The grid's units. ``off``: one sequential run per config; ``on``: every cell's
    seeds batched (refusing what cannot be, with the reason); ``auto``: batched where
    :func:`batching_helps`, sequential elsewhere. Cells keep their first appearance's
    order; a cell run sequentially is split into its seeds, so jobs spread them."""
    if mode not in BATCH_MODES:
        raise ValueError(f"batch-seeds mode must be one of {', '.join(BATCH_MODES)}, "
                         f"got {mode!r}")
    cells: dict = {}
    for c in configs:
        if mode == "on":
            check_batchable(c)
        cells.setdefault(dataclasses.replace(c, seed=0).hash(), []).append(c)
    groups = []
    for cell in cells.values():
        if mode == "on" or (mode == "auto" and batching_helps(cell[0], len(cell))):
            groups.append(SeedGroup(tuple(cell)))
        else:
            groups.extend(SeedGroup((c,)) for c in cell)
    return groups


def run_group(group: SeedGroup, runs_root, progress=None) -> list[dict]:
    """Train a seed group as one batched model, then evaluate and record every member as
    :func:`iwgan.runs.run_one` records a sequential run (same files, same row), with
    ``batch_seeds`` = K and ``train_seconds`` = the batch's wall time / K. A group of
    one config is :func:`iwgan.runs.run_one`."""
    from iwgan.records import RunDir, manifest, now, save_npy, save_torch
    from iwgan.runs import evaluate, manifest_columns, run_one

    if not group.batched:
        return [run_one(group.configs[0], runs_root, progress=progress)]
    cfgs = list(group.configs)
    cfg = cfgs[0]
    configure_torch(cfg)
    dirs = [RunDir(runs_root, c) for c in cfgs]
    records = [manifest(c) for c in cfgs]
    for c, run, rec in zip(cfgs, dirs, records):
        run.write("config.json", c.to_dict())
        run.write("manifest.json", {**rec, "batch_seeds": [x.seed for x in cfgs]})
    result = train_batched(cfg, [c.seed for c in cfgs], on_log=lambda k, r: dirs[k].log(r),
                           progress=progress)
    k_all = len(cfgs)
    rows = []
    for k, (c, run, rec) in enumerate(zip(cfgs, dirs, records)):
        row = {"run_id": c.run_id, "method": c.method, "mixture": c.mixture,
               "preset": c.preset, "seed": c.seed, "profile": c.profile,
               "iterations": c.iterations, "width": c.width, "batch_size": c.batch_size,
               "config_hash": c.hash(), **manifest_columns(rec), "batch_seeds": k_all}
        if result.diverged_at[k] is not None:
            nan = float("nan")
            row.update(status="diverged", diverged_at=result.diverged_at[k],
                       iterations_run=result.diverged_at[k],
                       train_seconds=result.wall_time, eval_seconds=0.0,
                       modes=nan, hq_pct=nan, kl=nan, w1=nan, recon_error=nan,
                       latent_mmd=nan, finished=now())
            run.write("metrics.json", {**row, "error": f"non-finite loss at iteration "
                                                        f"{result.diverged_at[k]}"})
            rows.append(row)
            continue
        eval_start = time.perf_counter()
        metrics, samples = evaluate(c, result.members[k])
        row.update(status="finished", diverged_at=np.nan, iterations_run=result.iterations,
                   train_seconds=result.wall_time,
                   eval_seconds=time.perf_counter() - eval_start, **metrics)
        save_npy(run.path / "samples.npy", samples)
        save_torch(run.path / "checkpoint.pt", {"config": c.to_dict(),
                                                **result.members[k].state_dict()})
        row["finished"] = now()
        run.write("metrics.json", row)
        run.write("manifest.json", {**rec, "batch_seeds": [x.seed for x in cfgs],
                                    "finished": row["finished"]})
        rows.append(row)
    return rows
