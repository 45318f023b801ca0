"""What the GPU campaign's stages cost, and which paper-profile runs fit the time left.

Two sources, the better first:

- **measured on the device**, by the campaign's own first stages: the seconds per
  iteration of paper-width stacks of K = 1, 4, 16 members of each method
  (``test_stacked_members``) and of one exact W1 at 2,500 samples (``test_w1_exact_2500``);
- **estimated before any GPU ran** (``python benchmarks/gpu_campaign.py plan``): an outer
  iteration of eager PyTorch on a GPU costs at least its host time, the aten operations
  it dispatches (counted here, on this machine, by :func:`count_ops`) times a per-op
  cost, and at least its FLOPs (``results/throughput/cpu.json``, counted by
  FlopCounterMode) over an achieved FLOP rate. The per-op costs and rates are
  assumptions, stated below with where they come from; docs/gpu_campaign.md gives the
  resulting table. Evaluation is on the CPU: its cost is the exact W1's, measured.

:func:`plan_mode_coverage` then picks the budget, the seeds and the blocks of the
paper-profile grid that fit (the rule is in its docstring).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from iwgan.core.methods import METHOD_NAMES
from iwgan.data.mixtures import MIXTURES, PRESETS
from iwgan.engine.records import REPO_ROOT

# --- assumptions of the estimate (replaced by the device's measurements as they come) ---
# Host time of one dispatched aten op of eager PyTorch on CUDA: the dispatcher, autograd,
# vmap's batching rules and the kernel launch (~2-4 us) on a server CPU. Measured here
# on CPU tensors of 5 hidden units (where compute is nil): 22-37 us per op at a load of
# 3x this machine's 2 cores, so ~8-12 us unloaded; views launch no kernel.
US_PER_KERNEL_OP, US_PER_VIEW_OP = 8.0, 2.0
VIEW_OPS = frozenset({"view", "t", "unsqueeze", "expand", "transpose", "permute", "select",
                      "slice", "detach", "alias", "_unsafe_view", "squeeze", "as_strided",
                      "unbind", "split", "reshape", "_reshape_alias", "split_with_sizes"})
# Achieved dense FLOP/s on an H100: fp32 matmuls on CUDA cores (torch keeps TF32 off for
# matmuls) at ~45 % of the 67 TFLOP/s peak; cuDNN's convolutions, TF32 by default, at
# ~30 % of 495; bf16 at ~30 % of 989.
ACHIEVED_FLOPS = {"fp32": 30e12, "tf32": 150e12, "bf16": 300e12}
# torch.compile from a cold cache (a fresh machine): the generator's and encoder's
# forward and backward graphs, once per graph set; a second stepper of the same variant
# in one process retraces and hits the compiled graphs (~15 s).
COMPILE_S = {"compile": 45.0 + 15.0, "compile_cudagraphs": 25.0 + 15.0,
             "bf16_channels_last_compile": 45.0 + 15.0}
# inductor fuses the pointwise work around the convolutions (fewer launches); CUDA graphs
# replay a whole step with one launch.
COMPILED_HOST = {"compile": 0.5, "compile_cudagraphs": 0.05, "bf16_channels_last_compile": 0.5}
PYTEST_START_S = 8.0        # python, torch, iwgan, pytest-benchmark, collection, CUDA init
PROCESS_START_S = 10.0      # one `python -m iwgan mode-coverage`: imports, CUDA, W1 floors
W1_2500_S = 1.24            # exact W1, 2,500 x 2,500, results/throughput/cpu.json
EVAL_OTHER_S = 0.05         # a run's generation, scoring, checkpoint and files
# The committed CPU benchmark's FLOPs per iteration (results/throughput/cpu.json), used
# when that file is absent: one member's paper-width mixture iteration (batch 256) and
# one image iteration of the CelebA networks at batch 16.
# (BiGAN's are those the benchmark measured as ``ali`` while ALI's encoder was
# deterministic; ALI's and the GAN's counted the same way by FlopCounterMode.)
FLOPS_FALLBACK = {("mixture", "iwgan"): 38.07e9, ("mixture", "wgan_gp"): 16.15e9,
                  ("mixture", "gan"): 3.23e9, ("mixture", "ali"): 5.19e9,
                  ("mixture", "bigan"): 5.19e9, ("mixture", "alpha_gan"): 10.04e9,
                  ("celeba", "iwgan"): 289.0e9, ("celeba", "wgan_gp"): 174.9e9,
                  ("celeba", "gan"): 122.4e9, ("celeba", "ali"): 175.3e9,
                  ("celeba", "bigan"): 175.0e9, ("celeba", "alpha_gan"): 293.3e9}
IMAGE_BATCH = 64            # the image benchmarks' batch on CUDA
IMAGE_MS_UNKNOWN = (20.0, 10.0, 5.0)   # an image iteration not estimated: host, tf32, bf16 ms
# Iterations each benchmark runs on CUDA (benchmarks/*.py): the stacked one times 8
# calls of 20 iterations of the stack and 6 of the reference; the fast path 5 warm-up +
# 20 timed + 300 for the loss curve + 5 rounds; test_image_iteration 1 + 1 (FLOPs) + 10.
STACKED_ITERATIONS, STACKED_REFERENCE = 160, 120
FAST_PATH_ITERATIONS, IMAGE_ITERATIONS, MIXTURE_ITERATIONS = 330, 12, 35

# The blocks of the paper-profile grid, in the priority: iWGAN and WGAN-GP on the
# paper presets, then the paper's other baselines, then the literature presets; the GAN
# and BiGAN (not in the paper's comparison) last.
BLOCKS = ((("iwgan", "wgan_gp"), "paper"), (("ali", "alpha_gan"), "paper"),
          (("iwgan", "wgan_gp"), "literature"), (("ali", "alpha_gan"), "literature"),
          (("gan", "bigan"), "paper"), (("gan", "bigan"), "literature"))
assert {m for ms, _ in BLOCKS for m in ms} == set(METHOD_NAMES)
assert {p for _, p in BLOCKS} == set(PRESETS)


# --- counting ----------------------------------------------------------------------------

class _Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.kernels = self.views = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._overloadpacket.__name__ in VIEW_OPS:
            self.views += 1
        else:
            self.kernels += 1
        return func(*args, **(kwargs or {}))


def _counted(stepper) -> tuple[int, int]:
    stepper.iteration()                       # the first builds lazily (vmap, Adam state)
    with _Count() as count:
        stepper.iteration()
    return count.kernels, count.views


def _foreach_adam(trainer) -> None:
    """Adam as torch runs it on CUDA parameters (foreach: a few ops for all tensors)
    rather than on CPU ones (a dozen ops per tensor)."""
    members = trainer.members
    for name, opt in members.optimizers.items():
        group = opt.param_groups[0]
        members.optimizers[name] = torch.optim.Adam(
            members.groups[name], lr=group["lr"], betas=group["betas"], foreach=True)


def count_ops(method: str, k: int = 1, arch: str = "mixture") -> tuple[int, int]:
    """(kernel-launching ops, view ops) of one outer iteration: the mixture networks of
    the paper profile with K stacked members, or the image networks (one run), counted on
    tiny copies of the same networks on this CPU (the count does not depend on sizes)."""
    from iwgan.engine.config import make_config
    from iwgan.experiments.throughput import ImageStepper, MixtureStepper

    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng(devices=[]):
            if arch == "mixture":
                cells = [(x, p) for p in PRESETS for x in MIXTURES]
                stepper = MixtureStepper([
                    make_config("paper", method=method, mixture=cells[i % 6][0],
                                preset=cells[i % 6][1], seed=i // 6, width=0.01,
                                batch_size=8, threads=1) for i in range(k)])
            else:
                stepper = ImageStepper(method, arch, 4, "cpu", width=0.05)
            _foreach_adam(stepper.trainer)
            return _counted(stepper)
    finally:
        torch.set_num_threads(threads)


# --- the cost model ------------------------------------------------------------------------

def committed_flops(results: Path = REPO_ROOT / "results") -> dict:
    """FLOPs per iteration of one member, by (networks, method), from the committed CPU
    benchmark (the same count as on any device), else :data:`FLOPS_FALLBACK`."""
    flops = dict(FLOPS_FALLBACK)
    path = Path(results) / "throughput" / "cpu.json"
    if path.exists():
        for r in json.loads(path.read_text())["benchmarks"]:
            m = re.fullmatch(r"test_(mixture|image)_iteration\[cpu-(\w+)-(\w+)\]", r["name"])
            if m and r.get("flops_per_iteration") and m[2] in ("paper_width", "celeba"):
                flops[("mixture" if m[1] == "mixture" else "celeba", m[3])] = \
                    r["flops_per_iteration"]
    return flops


@dataclass
class CostModel:
    """Seconds of the campaign's pieces. ``stack[m] = (h, c)``: one iteration of a
    paper-width stack of K members of method m costs h + c K ms (K >= 2; ``single[m]`` is
    K = 1, the unstacked path); ``image[m]``: ms of one eager CelebA iteration at batch
    64 (host, compute at fp32/TF32, compute at bf16); ``w1_s``: one exact W1 at 2,500
    samples. ``source`` says, per entry, whether it was measured or estimated."""

    stack: dict = field(default_factory=dict)
    single: dict = field(default_factory=dict)
    image: dict = field(default_factory=dict)
    w1_s: float = W1_2500_S
    source: dict = field(default_factory=dict)

    def stack_ms(self, method: str, k: int) -> float:
        if k == 1:
            return self.single[method]
        h, c = self.stack[method]
        return h + c * k

    def image_ms(self, method: str, variant: str) -> float:
        host, tf32, bf16 = self.image.get(method, IMAGE_MS_UNKNOWN)
        compute = bf16 if "bf16" in variant else tf32
        return max(host * COMPILED_HOST.get(variant, 1.0), compute)

    def eval_s(self, eval_samples: int = 2500, curve_points: int = 16,
               curve_w1: int = 500) -> float:
        """One run's evaluation on the CPU: the final exact W1 at ``eval_samples`` a side
        and ``curve_points`` + 1 on the way (min(eval_samples, 500) against 500); the
        network simplex here costs about n x m (0.10 s at 500, 2.4 s at 2,500)."""
        per_pair = self.w1_s / 2500 ** 2
        final = per_pair * eval_samples ** 2
        curve = per_pair * min(eval_samples, curve_w1) * curve_w1
        return final + (curve_points + 1) * curve + EVAL_OTHER_S

    def to_json(self) -> dict:
        return {"stack_ms_h_c": {m: [round(v, 3) for v in hc] for m, hc in self.stack.items()},
                "single_ms": {m: round(v, 3) for m, v in self.single.items()},
                "image_ms_host_tf32_bf16": {m: [round(v, 3) for v in x]
                                            for m, x in self.image.items()},
                "w1_2500_s": round(self.w1_s, 3), "source": self.source}


def estimated_cost(methods=METHOD_NAMES, image_methods=("iwgan", "wgan_gp")) -> CostModel:
    """The estimate before any GPU ran (the module's docstring says how)."""
    flops = committed_flops()
    cost = CostModel()
    for m in methods:
        flops_ms = 1e3 * flops[("mixture", m)] / ACHIEVED_FLOPS["fp32"]
        ms = {}
        for k in (1, 2, 4):
            kernels, views = count_ops(m, k)
            ms[k] = (kernels * US_PER_KERNEL_OP + views * US_PER_VIEW_OP) / 1e3
        per_member = (ms[4] - ms[2]) / 2       # each member's own draws of data and noise
        cost.single[m] = max(ms[1], flops_ms)
        # host and GPU overlap, so this sum bounds a stacked iteration from above
        cost.stack[m] = (ms[2] - 2 * per_member, per_member + flops_ms)
        cost.source[f"stack {m}"] = (
            f"estimated: {ms[2] - 2 * per_member:.1f} ms of dispatch a stacked iteration "
            f"+ {per_member:.2f} ms a member, {flops_ms:.2f} ms of fp32 FLOPs a member")
    for m in image_methods:
        kernels, views = count_ops(m, arch="celeba")
        host = (kernels * US_PER_KERNEL_OP + views * US_PER_VIEW_OP) / 1e3
        f = flops[("celeba", m)] * IMAGE_BATCH / 16
        cost.image[m] = (host, 1e3 * f / ACHIEVED_FLOPS["tf32"], 1e3 * f / ACHIEVED_FLOPS["bf16"])
        cost.source[f"image {m}"] = "estimated: dispatched ops and FLOPs"
    cost.source["w1"] = f"results/throughput/cpu.json: {W1_2500_S} s"
    return cost


def measured_cost(records: list[dict], cost: CostModel, profile: str = "paper") -> CostModel:
    """``cost`` with what the device measured: per method, the stack's ms per iteration
    fitted as h + c K over the stacked benchmark's K >= 2 (one K: c kept, h fitted), K = 1
    measured; the exact W1's seconds."""
    points: dict = {}
    for r in records:
        if r.get("status") != "ok":
            continue
        name = r["name"]
        if name.startswith("test_stacked_members[") and r.get("gradient") == "closed_form" \
                and r.get("profile") == profile:
            points.setdefault(r["params"]["method"], {})[int(r["k"])] = r["step_ms"]
        elif name == "test_w1_exact_2500":
            cost.w1_s = r["median_s"]
            cost.source["w1"] = "measured on this machine"
    for m, by_k in points.items():
        if 1 in by_k:
            cost.single[m] = by_k[1]
        ks = sorted(k for k in by_k if k >= 2)
        if len(ks) >= 2:
            mean_k = sum(ks) / len(ks)
            mean_t = sum(by_k[k] for k in ks) / len(ks)
            slope = (sum((k - mean_k) * (by_k[k] - mean_t) for k in ks)
                     / sum((k - mean_k) ** 2 for k in ks))
            c = max(slope, 0.0)
            cost.stack[m] = (max(mean_t - c * mean_k, 0.0), c)
        elif ks and m in cost.stack:
            c = cost.stack[m][1]
            cost.stack[m] = (max(by_k[ks[0]] - c * ks[0], 0.0), c)
        else:
            continue
        cost.source[f"stack {m}"] = f"measured on this device (K = {', '.join(map(str, ks))})"
    return cost


# --- the benchmark stages ------------------------------------------------------------------

def _params(name: str) -> list[str]:
    m = re.search(r"\[(.*)\]", name)
    return m.group(1).split("-") if m else []


def benchmark_seconds(names, cost: CostModel) -> float:
    """Estimated seconds of one pytest run of the benchmarks ``names`` on CUDA."""
    total, eager_done = PYTEST_START_S, set()
    for name in names:
        p = _params(name)
        test = name.split("[")[0]
        if test == "test_stacked_members":
            k, method = int(p[2]), p[3]
            total += 1.0 + (STACKED_ITERATIONS * cost.stack_ms(method, k)
                            + STACKED_REFERENCE * cost.stack_ms(method, 1)) / 1e3
        elif test == "test_fast_path":
            variant, method = "-".join(p[1:-2]), p[-1]
            if method not in eager_done:       # the eager fp32 baseline, once a process
                eager_done.add(method)
                total += FAST_PATH_ITERATIONS * cost.image_ms(method, "eager_fp32") / 1e3
            total += (FAST_PATH_ITERATIONS * cost.image_ms(method, variant) / 1e3
                      + COMPILE_S.get(variant, 0.0))
        elif test == "test_image_iteration":
            total += 2.0 + IMAGE_ITERATIONS * cost.image_ms(p[-1], "eager_fp32") / 1e3
        elif test == "test_mixture_iteration":
            total += 2.0 + MIXTURE_ITERATIONS * cost.stack_ms(p[-1], 1) / 1e3
        elif test == "test_w1_exact_2500":
            total += 3.0 + 4 * cost.w1_s     # POT's import, a warm-up, 3 rounds
        else:
            total += 15.0
    return total


# --- the paper-profile grid ------------------------------------------------------------------

@dataclass(frozen=True)
class GridScale:
    """The paper-profile grid's sizes: budgets and seeds tried, and what a run evaluates."""

    iterations: tuple = (20_000, 10_000, 5_000, 2_000, 1_000, 500)
    seeds: tuple = (3, 2)           # tried for the first block, most first
    max_seeds: int = 5              # raised to, for every chosen block, if time is left
    eval_samples: int = 2_500
    curve_points: int = 16
    mixtures: tuple = MIXTURES


def invocations(blocks) -> list[dict]:
    """The ``mode-coverage`` commands that train ``blocks`` (a prefix of :data:`BLOCKS`):
    one per set of presets, each method one stack of all its cells and seeds, iWGAN's
    and WGAN-GP's first."""
    presets: dict = {}
    for methods, preset in blocks:
        for m in methods:
            presets.setdefault(m, []).append(preset)
    groups: dict = {}
    for m in METHOD_NAMES:
        if m in presets:
            groups.setdefault(tuple(presets[m]), []).append(m)
    return [{"methods": ms, "presets": list(ps)} for ps, ms in groups.items()]


def grid_seconds(blocks, iterations: int, seeds: int, cost: CostModel,
                 scale: GridScale) -> float:
    """Estimated seconds of training and evaluating ``blocks`` at that budget and seeds."""
    total = 0.0
    per_run = cost.eval_s(scale.eval_samples, scale.curve_points)
    for inv in invocations(blocks):
        total += PROCESS_START_S
        for m in inv["methods"]:
            k = len(inv["presets"]) * len(scale.mixtures) * seeds
            total += iterations * cost.stack_ms(m, k) / 1e3 + k * per_run
    return total


def plan_mode_coverage(seconds: float, cost: CostModel, scale: GridScale = GridScale()) -> dict:
    """What of the paper-profile grid fits in ``seconds``. The rule, in the issue's
    priority: the largest budget (of ``scale.iterations``) at which the first block
    (iWGAN and WGAN-GP, paper preset, every mixture) fits with the most seeds of
    ``scale.seeds``; at that budget and seeds, the next blocks in order while they fit;
    then more seeds for every chosen block while all fit, up to ``scale.max_seeds``.
    Budget and seeds are the same for every method and preset: one comparison."""
    for iterations in scale.iterations:
        for seeds in scale.seeds:
            if grid_seconds(BLOCKS[:1], iterations, seeds, cost, scale) <= seconds:
                break
        else:
            continue
        break
    else:
        smallest = grid_seconds(BLOCKS[:1], scale.iterations[-1], scale.seeds[-1], cost, scale)
        return {"fits": False, "seconds": round(seconds, 1),
                "reason": f"the first block (iwgan and wgan_gp, paper preset) needs an "
                          f"estimated {smallest:.0f} s at {scale.iterations[-1]} iterations "
                          f"and {scale.seeds[-1]} seed(s); {seconds:.0f} s were left"}
    n = 1
    while n < len(BLOCKS) and grid_seconds(BLOCKS[:n + 1], iterations, seeds, cost,
                                           scale) <= seconds:
        n += 1
    while seeds < scale.max_seeds and grid_seconds(BLOCKS[:n], iterations, seeds + 1, cost,
                                                   scale) <= seconds:
        seeds += 1
    blocks = BLOCKS[:n]
    return {"fits": True, "iterations": iterations, "seeds": seeds,
            "blocks": [{"methods": list(ms), "preset": p} for ms, p in blocks],
            "left_out": [{"methods": list(ms), "preset": p} for ms, p in BLOCKS[n:]],
            "invocations": invocations(blocks),
            "estimate_s": round(grid_seconds(blocks, iterations, seeds, cost, scale), 1),
            "seconds": round(seconds, 1)}
