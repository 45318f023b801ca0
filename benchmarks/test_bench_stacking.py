"""K runs trained as one stacked model (iwgan.engine.stacking) against one run at a time.

The baseline is the plain reference loop (reference_steps.train: one seed, autograd's
double-backward gradient penalty, nothing of the suite), which the suite's single run
matched within 5 % before stacking and the closed-form penalty existed: "one seed at a
time" as the suite ran it. The per-member speed-up is K x (reference seconds per
iteration) / (stack seconds per iteration), measured in interleaved pairs so that load
hits both alike. A stack of K >= 6 holds members that differ in mixture and preset too,
as a grid's stack of all of a method's cells does.

Side by side in one run: the penalty's input gradient in closed form (the default) and
by autograd (``autograd_input_gradient``), and torch.compile of a single run's losses.
Targets: per-member throughput at the quick width >= 2x one seed at a time (CPU);
K = 16 at the paper width on a GPU >= 0.8 K."""

from __future__ import annotations

import contextlib
import statistics
import time

import pytest
import reference_steps as ref
import torch
import torch._inductor.config as inductor

from iwgan.core.losses import autograd_input_gradient
from iwgan.core.methods import Phase
from iwgan.data.mixtures import MIXTURES, PRESETS, get_mixture
from iwgan.engine.config import make_config
from iwgan.engine.devices import bf16_matmul_path, cpu_model, sync
from iwgan.experiments.throughput import (
    MixtureStepper,
    count_flops,
    cpu_gemm_peak,
    todays_stack_optimizer,
)

# device kind -> profile -> (K values, iterations per timed call, pairs). "half" is the
# quick profile at half the width: where on the CPU stacking stops paying.
SETTINGS = {"cpu": {"quick": ((1, 4, 8, 15, 30), 10, 5), "half": ((4, 15), 4, 3),
                    "paper": ((1, 2, 4), 2, 3)},
            "cuda": {"paper": ((1, 4, 16), 20, 5)}}
WIDTHS = {"half": ("quick", 0.5)}
METHODS = ("iwgan", "wgan_gp", "gan", "ali", "bigan", "alpha_gan")
GRADIENTS = {"closed_form": contextlib.nullcontext, "autograd": autograd_input_gradient}
CELLS = [(m, p) for p in PRESETS for m in MIXTURES]   # 6 (mixture, preset) pairs


def members(profile, method, k, device):
    """K configs: seeds 0.. over the 6 mixture x preset cells, cell first."""
    base, width = WIDTHS.get(profile, (profile, None))
    return [make_config(base, method=method, mixture=CELLS[i % 6][0],
                        preset=CELLS[i % 6][1], seed=i // 6, threads=1, device=device,
                        width=width)
            for i in range(k)]


def interleaved(a, b, pairs):
    """Median seconds of ``a`` and ``b`` and the median ratio b / a, alternating order."""
    t_a, t_b, ratios = [], [], []
    for i in range(pairs):
        for f in ((a, b) if i % 2 == 0 else (b, a)):
            start = time.perf_counter()
            f()
            (t_a if f is a else t_b).append(time.perf_counter() - start)
        ratios.append(t_b[-1] / t_a[-1])
    return statistics.median(t_a), statistics.median(t_b), statistics.median(ratios)


@pytest.mark.parametrize("gradient", GRADIENTS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k", sorted({k for s in SETTINGS.values() for p in s.values()
                                      for k in p[0]}))
@pytest.mark.parametrize("profile", ("quick", "half", "paper"))
def test_stacked_members(benchmark, profile, k, method, gradient, device):
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if profile not in SETTINGS[kind]:
        pytest.skip(f"the {profile} profile is not measured on {kind}")
    ks, n, pairs = SETTINGS[kind][profile]
    if k not in ks:
        pytest.skip(f"K = {k} is not measured on {kind} at the {profile} profile (K in {ks})")
    unpenalised = ("gan", "ali", "bigan", "alpha_gan")
    if gradient != "closed_form" and (method in unpenalised or k not in (1, max(ks))
                                      or profile == "half"):
        pytest.skip("the autograd penalty is measured for the penalised methods at the "
                    "smallest and the largest K")
    if profile == "half" and method not in ("iwgan", "wgan_gp"):
        pytest.skip("half width is measured for iwgan and wgan_gp")
    torch.set_num_threads(1)
    cfgs = members(profile, method, k, device)
    cfg = cfgs[0]
    mixture = get_mixture(cfg.mixture, cfg.preset)
    with GRADIENTS[gradient]():
        stack = MixtureStepper(cfgs)

        def run_stack():
            for _ in range(n):
                stack.iteration()
            sync(device)

        def run_reference():
            ref.train(method, mixture.centres, mixture.std, n, cfg.batch_size, cfg.width,
                      cfg.lr, (cfg.beta1, cfg.beta2), cfg.n_critic, cfg.z_dim, device=device)
            sync(device)

        run_stack()
        run_reference()
        t_ref, t_stack, ratio = interleaved(run_reference, run_stack, pairs)
        benchmark.pedantic(run_stack, rounds=2, iterations=1)
    per_it = stack.batches_per_iteration() * cfg.batch_size
    benchmark.extra_info.update(
        k=k, gradient=gradient, iterations_per_call=n, samples_per_iteration=k * per_it,
        threads=1, step_ms=1e3 * t_stack / n, samples_per_s=k * per_it * n / t_stack,
        member_step_ms=1e3 * t_stack / n / k, reference_step_ms=1e3 * t_ref / n,
        speedup_over_one_at_a_time=k / ratio, width=cfg.width, batch_size=cfg.batch_size,
        profile=profile, cells=len({(c.mixture, c.preset) for c in cfgs}))


def test_compiled_single_run_losses(benchmark, device):
    """torch.compile of a single run's loss functions (iWGAN, quick width): the speed-up
    once compiled and what compiling costs from a cold cache (as a fresh machine pays
    it), to say whether it pays at a run's budget."""
    if device != "cpu":
        pytest.skip("measured on CPU (on a GPU the stack is the unit that matters)")
    torch.set_num_threads(1)
    torch._dynamo.reset()
    cfg = make_config("quick", method="iwgan", threads=1)
    eager, compiled = MixtureStepper(cfg), MixtureStepper(cfg)
    trainer = compiled.trainer
    trainer.phases = [Phase(torch.compile(p.loss), p.optimizer, p.count, p.draws)
                      for p in trainer.phases]
    start = time.perf_counter()
    with inductor.patch(force_disable_caches=True):   # no warm cache from an earlier run
        compiled.iteration()
    compile_s = time.perf_counter() - start
    n = 20

    def loop(stepper):
        return lambda: [stepper.iteration() for _ in range(n)]

    t_eager, t_compiled, ratio = interleaved(loop(eager), loop(compiled), 5)
    benchmark.pedantic(loop(compiled), rounds=2, iterations=1)
    benchmark.extra_info.update(
        step_ms=1e3 * t_compiled / n, eager_step_ms=1e3 * t_eager / n,
        speedup_over_eager=1 / ratio, compile_seconds=compile_s,
        break_even_iterations=compile_s / max(1e-9, (t_eager - t_compiled) / n),
        profile_iterations=cfg.iterations, threads=1)


# The converged profile's stacks (issue targets: per-member throughput >= 2.5x today's,
# the step at >= 25 % of the core's fp32 GEMM peak).
CONVERGED_K, CONVERGED_PAIRS, CONVERGED_N = 15, 5, 2
CONVERGED_VARIANTS = ("before", "torch", "fused")


def converged_members(method, k, device, **kw):
    return [make_config("converged", method=method, mixture=CELLS[i % 6][0],
                        preset=CELLS[i % 6][1], seed=i // 6, threads=1, device=device, **kw)
            for i in range(k)]


@pytest.mark.parametrize("method", METHODS)
def test_converged_stack(benchmark, method, device):
    """K = 15 members at the converged profile (width 0.25, batch 64, n_critic 5, EMA, the
    linear schedule), over the 6 mixture x preset cells, one thread: today's stacked step
    ("before": torch.optim.Adam on the stacked tensors, as at commit aa4fd0f), the
    default path ("torch": the same arithmetic through iwgan.engine.optim.MemberAdam) and
    the fast path ("fused": adam="fused"), interleaved in rotating order; the core's fp32
    GEMM rate measured before and after them, in the same process."""
    if device != "cpu":
        pytest.skip("the converged profile is a CPU profile")
    torch.set_num_threads(1)
    peak_before = cpu_gemm_peak()
    steppers = {"before": todays_stack_optimizer(MixtureStepper(
                    converged_members(method, CONVERGED_K, device))),
                "torch": MixtureStepper(converged_members(method, CONVERGED_K, device)),
                "fused": MixtureStepper(converged_members(method, CONVERGED_K, device,
                                                          adam="fused"))}

    def loop(stepper):
        def run():
            for _ in range(CONVERGED_N):
                stepper.iteration()
            sync(device)
        return run

    runs = {name: loop(s) for name, s in steppers.items()}
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for i in range(CONVERGED_PAIRS):
        order = CONVERGED_VARIANTS[i % 3:] + CONVERGED_VARIANTS[:i % 3]
        for name in order:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    ratios = {name: statistics.median(b / a for a, b in zip(times[name], times["before"]))
              for name in runs}
    flops = count_flops(steppers["torch"].iteration)
    benchmark.pedantic(runs["fused"], rounds=1, iterations=1)
    peak_after = cpu_gemm_peak()
    peak = {key: max(peak_before[key], peak_after[key]) for key in peak_before}
    bf16, bf16_why = bf16_matmul_path()
    info = dict(k=CONVERGED_K, profile="converged", width=0.25, batch_size=64, n_critic=5,
                ema=0.99, threads=1, pairs=CONVERGED_PAIRS, iterations_per_call=CONVERGED_N,
                flops_per_iteration=flops, cpu_model=cpu_model(),
                cpu_capability=torch.backends.cpu.get_cpu_capability(),
                bf16_accelerated=bf16, matmul_precision="bf16" if bf16 else "fp32",
                matmul_path=bf16_why, peak_gflops=peak, peak_gflops_before=peak_before,
                peak_gflops_after=peak_after)
    for name in runs:
        seconds = statistics.median(times[name]) / CONVERGED_N
        gflops = flops / seconds / 1e9
        info[name] = dict(stack_ms=1e3 * seconds, member_ms=1e3 * seconds / CONVERGED_K,
                          gflops=gflops, speedup_over_before=ratios[name],
                          pct_gemm_peak=100 * gflops / peak["gemm_2048"],
                          pct_bmm_peak=100 * gflops / peak["bmm_15x64x128x128"])
    benchmark.extra_info.update(info)
