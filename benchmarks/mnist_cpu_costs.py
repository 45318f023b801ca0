"""What one iteration of each method costs on the MNIST networks on this CPU, in CPU
seconds (``time.process_time``, one thread), at the candidate widths of the MNIST ``cpu``
profile (batch 64, 2 + 2 steps); and whether stacking K seeds into one model
(iwgan.engine.stacking) pays on these convolutions. CPU seconds, not wall seconds: on 2
shared cores the wall time of a nice'd process is several times its CPU time, and the CPU
time is what a budget of CPU-hours counts (it still grows with contention, so the load
average is recorded).

    python benchmarks/mnist_cpu_costs.py [--iterations 10] [--widths 0.25 0.125]

Writes results/mnist_search/costs.json (a few CPU-minutes).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from iwgan.core.methods import METHOD_NAMES
from iwgan.data.datasets import BatchSampler, ImageBatches
from iwgan.engine.config import make_image_config
from iwgan.engine.records import cpu_model, git_state, now
from iwgan.engine.trainer import Trainer
from iwgan.files import write_json

OUT = Path("results") / "mnist_search" / "costs.json"
STACKED = ("iwgan", "wgan_gp")
K = 3


def trainers(method: str, width: float, seeds: list[list[int]]) -> list[Trainer]:
    """One trainer per group of seeds (a group of K is one stacked model), on random
    uint8 images through the image runs' own sampler."""
    images = torch.randint(0, 256, (2_000, 1, 28, 28), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    out = []
    for group in seeds:
        cfgs = [make_image_config("mnist", "cpu", method=method, seed=s, width=width)
                for s in group]
        samplers = [BatchSampler(len(images), cfgs[0].batch_size, s) for s in group]
        out.append(Trainer(cfgs, ImageBatches(images, samplers, "cpu")))
    return out


def cpu_seconds(group: list[Trainer], iterations: int) -> float:
    """Median CPU seconds of one iteration of every trainer of ``group``, after 2 warm-up
    iterations."""
    for trainer in group:
        for _ in range(2):
            trainer.run_iteration()
    times = []
    for _ in range(iterations):
        start = time.process_time()
        for trainer in group:
            trainer.run_iteration()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iterations", type=int, default=10, help="timed iterations")
    p.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.125])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    record = {"profile": "mnist cpu (batch 64, 2 + 2 steps)", "iterations": args.iterations,
              "threads": 1, "torch": torch.__version__, "cpu_model": cpu_model(),
              "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()[0],
              "platform": platform.platform(), "commit": git_state()["commit"],
              "date": now(), "cpu_seconds_per_iteration": {}, "stacking": {}}
    for width in args.widths:
        record["cpu_seconds_per_iteration"][str(width)] = {
            m: round(cpu_seconds(trainers(m, width, [[0]]), args.iterations), 4)
            for m in METHOD_NAMES}
        print(width, record["cpu_seconds_per_iteration"][str(width)], flush=True)
    width = args.widths[0]
    for method in STACKED:
        single = cpu_seconds(trainers(method, width, [[s] for s in range(K)]), args.iterations)
        stacked = cpu_seconds(trainers(method, width, [list(range(K))]), args.iterations)
        record["stacking"][method] = {"width": width, "K": K,
                                      "one_after_another_s": round(single, 4),
                                      "stacked_s": round(stacked, 4),
                                      "speedup": round(single / stacked, 3)}
        print(method, record["stacking"][method], flush=True)
    record["load_average_at_end"] = os.getloadavg()[0]
    write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
