"""The GPU fast path on the image networks: bf16 autocast, channels_last, torch.compile
and CUDA graphs (compile's "reduce-overhead"), each against eager fp32 from the same
seed: samples/s, speed-up, model FLOPs utilisation (FLOPs by FlopCounterMode on the eager
iteration) and whether training stays on track (loss curves over CURVE_STEPS iterations
within iwgan.experiments.throughput's stated tolerance of the eager fp32 curves). Target:
>= 3x eager fp32 samples/s for the CelebA networks on an H100.

Needs CUDA: on CPU every variant falls back to eager fp32 (iwgan.experiments.throughput.
resolve_fast_path) and is recorded as not run, with that message; the eager CPU number is
test_bench_steps.py::test_image_iteration's.
"""

from __future__ import annotations

import pytest
from conftest import fast_path

from iwgan.core.networks import ARCHITECTURES
from iwgan.engine.devices import sync
from iwgan.experiments.throughput import (
    CURVE_ABS,
    CURVE_REL,
    CURVE_WINDOW,
    FAST_PATH_VARIANTS,
    ImageStepper,
    compare_curves,
    conv_precision,
    count_flops,
    loss_curves,
    peak_flops,
    resolve_fast_path,
)

CURVE_STEPS = 300
BATCH = 64
_EAGER: dict = {}  # (arch, method) -> (median seconds, loss curves)


def timed_median(stepper, rounds=20):
    import statistics
    import time

    for _ in range(5):  # warm-up: compilation, CUDA graph capture, cuDNN autotuning
        stepper.iteration()
    sync(stepper.device)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        stepper.iteration()
        sync(stepper.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.mark.parametrize("method", ["iwgan", "wgan_gp"])
@pytest.mark.parametrize("arch", ["celeba", "mnist"])
@pytest.mark.parametrize("variant", FAST_PATH_VARIANTS)
def test_fast_path(benchmark, variant, arch, method, device):
    options = tuple(o for o in FAST_PATH_VARIANTS[variant] if o in fast_path())
    if set(options) != set(FAST_PATH_VARIANTS[variant]):
        pytest.skip(f"{variant}: option(s) not asked for (--fast-path)")
    if not device.startswith("cuda"):
        if not options:
            pytest.skip("needs CUDA: the fast path's eager fp32 baseline is measured on the "
                        "GPU (the CPU's eager fp32 numbers: test_image_iteration)")
        _, notes = resolve_fast_path(options, device)
        pytest.skip("needs CUDA: " + "; ".join(notes) + " (eager fp32 CPU numbers: "
                    "test_image_iteration)")
    if arch not in ARCHITECTURES:
        pytest.skip(f"the {arch!r} networks are not in iwgan.core.networks.ARCHITECTURES yet")
    key = (arch, method)
    if key not in _EAGER:
        eager = ImageStepper(method, arch, BATCH, device)
        t_eager = timed_median(eager)
        flops = count_flops(eager.iteration)
        curves = loss_curves(ImageStepper(method, arch, BATCH, device), CURVE_STEPS)
        _EAGER[key] = (t_eager, flops, curves)
    t_eager, flops, eager_curves = _EAGER[key]
    try:
        stepper = ImageStepper(method, arch, BATCH, device, options)
        t = timed_median(stepper)
        worst = compare_curves(eager_curves, loss_curves(
            ImageStepper(method, arch, BATCH, device, options), CURVE_STEPS))
    except Exception as err:  # a variant that fails is recorded, not fatal
        pytest.skip(f"{variant} failed on {arch}/{method}: {type(err).__name__}: {err}")
    benchmark.pedantic(lambda: (stepper.iteration(), sync(device)), rounds=5, iterations=1)
    per_it = stepper.batches_per_iteration() * BATCH
    precision = conv_precision(device, "bf16" if "bf16" in options else "fp32")
    peak = peak_flops(device, precision)
    benchmark.extra_info.update(
        variant=variant, options=list(options), step_ms=1e3 * t, samples_per_s=per_it / t,
        speedup_over_eager=t_eager / t, flops_per_iteration=flops, precision=precision,
        mfu_pct=100 * flops / t / peak if peak else None, batch_size=BATCH,
        curve_steps=CURVE_STEPS, curve_worst_ratio=worst,
        on_track=all(v <= 1 for v in worst.values()),
        curve_tolerance=f"{CURVE_WINDOW}-step moving averages within {CURVE_REL:g} x |eager| "
                        f"+ {CURVE_ABS:g} x max|eager|")
