"""K seeds trained as one batched model (iwgan.batched) against one seed's sequential
iteration: the speed-up is K x (sequential seconds per iteration) / (batched seconds per
iteration of all K), measured in interleaved pairs so that load hits both alike.
Targets: K = 4 at the quick width on CPU >= 1.5x; K = 16 at the paper width on a GPU
>= 0.8 K. On CPU the paper width is measured too (K = 2, 4), the case where the sessions
do not batch."""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from iwgan.batched import BatchedRun
from iwgan.config import make_config
from iwgan.throughput import MixtureStepper, sync

# device kind -> profile -> (K values, iterations per timed call, pairs). On CPU the
# paper width too: there batching does not pay (iwgan.batched.batching_helps), and this
# is the measurement that says so.
SETTINGS = {"cpu": {"quick": ((1, 2, 4, 8), 20, 7), "paper": ((2, 4), 3, 3)},
            "cuda": {"paper": ((1, 4, 16), 20, 5)}}
METHODS = ("iwgan", "wgan_gp")
PROFILES = ("quick", "paper")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k", sorted({k for s in SETTINGS.values() for p in s.values()
                                      for k in p[0]}))
@pytest.mark.parametrize("profile", PROFILES)
def test_batched_seeds(benchmark, profile, method, k, device):
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if profile not in SETTINGS[kind]:
        pytest.skip(f"the {profile} profile is not measured on {kind}")
    ks, n, pairs = SETTINGS[kind][profile]
    if k not in ks:
        pytest.skip(f"K = {k} is not measured on {kind} at the {profile} profile (K in {ks})")
    cfg = make_config(profile, method=method, threads=1, device=device)
    torch.set_num_threads(1)
    batched = BatchedRun(cfg, list(range(k)), device=device)
    single = MixtureStepper(cfg, device)

    def run_batched():
        for _ in range(n):
            torch.stack(list(batched.step().values())).tolist()  # train_batched's sync
        sync(device)

    def run_single():
        for _ in range(n):
            single.iteration()
        sync(device)

    run_batched()
    run_single()
    t_b, t_s, ratios = [], [], []
    for i in range(pairs):
        for f in ((run_batched, run_single) if i % 2 == 0 else (run_single, run_batched)):
            start = time.perf_counter()
            f()
            (t_b if f is run_batched else t_s).append(time.perf_counter() - start)
        ratios.append(k * t_s[-1] / t_b[-1])
    benchmark.pedantic(run_batched, rounds=3, iterations=1)
    per_it = single.batches_per_iteration() * cfg.batch_size
    b_it = statistics.median(t_b) / n
    benchmark.extra_info.update(
        k=k, iterations_per_call=n, samples_per_iteration=k * per_it, threads=1,
        step_ms=1e3 * b_it, samples_per_s=k * per_it / b_it,
        sequential_step_ms=1e3 * statistics.median(t_s) / n,
        speedup_over_sequential=statistics.median(ratios),
        speedup_pairs=[round(r, 3) for r in ratios], width=cfg.width,
        batch_size=cfg.batch_size, profile=profile)
