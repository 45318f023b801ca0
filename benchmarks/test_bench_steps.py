"""One training iteration of every method on every architecture preset, samples/s; the
suite's iteration against the plain reference (reference_steps.py); how the cost grows
with batch size and width.

An iteration is the method's phases once (iwgan: n_critic critic + n_critic G/Q steps,
wgan_gp: n_critic + 1, gan, ali, bigan and alpha_gan: 1 + 1); samples/s counts the data
points it draws: batches per iteration x batch size / seconds per iteration.
"""

from __future__ import annotations

import statistics
import time

import pytest
import reference_steps as ref
import torch

from iwgan.core.methods import METHOD_NAMES
from iwgan.core.networks import ARCHITECTURES
from iwgan.data.mixtures import get_mixture
from iwgan.engine.config import make_config
from iwgan.engine.devices import sync
from iwgan.engine.trainer import train
from iwgan.experiments.throughput import (
    ImageStepper,
    MixtureStepper,
    conv_precision,
    count_flops,
    peak_flops,
)

# preset -> (profile, iterations per timed call on CPU, interleaved pairs for the overhead)
MIXTURE_PRESETS = {"paper_width": ("paper", 2, 5), "quick_width": ("quick", 30, 9)}


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("preset", MIXTURE_PRESETS)
def test_mixture_iteration(benchmark, method, preset, device):
    """The suite's iterations (iwgan.engine.trainer.train itself, end to end from the seed,
    on ``device``) and, interleaved with them, the plain reference's (reference_steps.train,
    same seed, networks and batches, also end to end); the overhead is the median of the
    paired time ratios, so that load on the machine hits both alike. One thread on CPU,
    as the quick profile."""
    profile, n, pairs = MIXTURE_PRESETS[preset]
    cfg = make_config(profile, method=method, iterations=n, threads=1, device=device)
    torch.set_num_threads(1)
    mixture = get_mixture(cfg.mixture, cfg.preset)
    stepper = MixtureStepper(cfg)
    per_it = stepper.batches_per_iteration() * cfg.batch_size

    def suite():  # train() end to end: seed, build, n iterations, logs
        train(cfg)
        sync(device)

    def reference():
        ref.train(method, mixture.centres, mixture.std, n, cfg.batch_size, cfg.width,
                  cfg.lr, (cfg.beta1, cfg.beta2), cfg.n_critic, cfg.z_dim, device=device)

    suite()
    reference()  # warm-up
    ratios, t_suite, t_ref = [], [], []
    for i in range(pairs):
        order = (reference, suite) if i % 2 == 0 else (suite, reference)
        times = {f: timed(f, device) for f in order}
        t_ref.append(times[reference])
        t_suite.append(times[suite])
        ratios.append(times[suite] / times[reference])
    benchmark.pedantic(suite, rounds=3, iterations=1)
    flops = count_flops(stepper.iteration)
    suite_it = statistics.median(t_suite) / n
    benchmark.extra_info.update(
        iterations_per_call=n, samples_per_iteration=per_it, threads=1,
        step_ms=1e3 * suite_it, samples_per_s=per_it / suite_it,
        reference_step_ms=1e3 * statistics.median(t_ref) / n,
        overhead_pct=100 * (statistics.median(ratios) - 1),
        overhead_pairs=[round(r, 4) for r in ratios],
        flops_per_iteration=flops, gflops_per_s=flops / suite_it / 1e9,
        width=cfg.width, batch_size=cfg.batch_size, n_critic=cfg.n_critic)
    peak = peak_flops(device, "fp32")
    if peak:
        benchmark.extra_info["mfu_pct"] = 100 * flops / suite_it / peak


IMAGE_BATCH = {"cpu": 16, "cuda": 64}


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("arch", ["mnist", "celeba"])
def test_image_iteration(benchmark, method, arch, device):
    """One critic step and one generator step on the Appendix D2/D3 networks (eager fp32;
    the fast path is test_bench_fast_path.py); batch 16 on CPU, 64 on CUDA."""
    if arch not in ARCHITECTURES:
        pytest.skip(f"the {arch!r} networks are not in iwgan.core.networks.ARCHITECTURES yet")
    batch = IMAGE_BATCH["cuda" if device.startswith("cuda") else "cpu"]
    stepper = ImageStepper(method, arch, batch, device)
    stepper.iteration()  # warm-up (cuDNN autotuning)
    flops = count_flops(stepper.iteration)

    def run():
        stepper.iteration()
        sync(device)

    rounds = 2 if device == "cpu" else 10
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
    it = benchmark.stats.stats.median
    per_it = stepper.batches_per_iteration() * batch
    precision = conv_precision(device, "fp32")   # cuDNN's convolutions: TF32 on CUDA
    benchmark.extra_info.update(iterations_per_call=1, samples_per_iteration=per_it,
                                step_ms=1e3 * it, samples_per_s=per_it / it,
                                flops_per_iteration=flops, gflops_per_s=flops / it / 1e9,
                                batch_size=batch, precision=precision)
    peak = peak_flops(device, precision)
    if peak:
        benchmark.extra_info["mfu_pct"] = 100 * flops / it / peak


SCALING_BATCHES = (64, 256, 1024)
SCALING_WIDTHS = (0.25, 0.5, 1.0)


@pytest.mark.parametrize("batch_size", SCALING_BATCHES)
@pytest.mark.parametrize("width", SCALING_WIDTHS)
def test_scaling(benchmark, width, batch_size, device):
    """iwgan, one critic + one G/Q step (n_critic = 1), over batch size and width."""
    cfg = make_config("paper", method="iwgan", width=width, batch_size=batch_size,
                      n_critic=1, device=device)
    stepper = MixtureStepper(cfg)
    stepper.iteration()
    n = 3 if device == "cpu" else 20

    def run():
        for _ in range(n):
            stepper.iteration()
        sync(device)

    benchmark.pedantic(run, rounds=3, iterations=1)
    it = benchmark.stats.stats.median / n
    per_it = stepper.batches_per_iteration() * batch_size
    benchmark.extra_info.update(iterations_per_call=n, samples_per_iteration=per_it,
                                step_ms=1e3 * it, samples_per_s=per_it / it, width=width,
                                batch_size=batch_size)
