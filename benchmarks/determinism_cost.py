"""What the ``deterministic`` option costs on CPU: N quick-profile iterations of every method
with ``deterministic`` False and True, timed by the training loop itself (network
construction excluded), interleaved and repeated so that load on the machine hits both
settings alike; the median of each is kept. Also checks that both settings give the same
samples, byte for byte.

    python benchmarks/determinism_cost.py [--iterations 100] [--repeats 3]

Writes results/benchmarks/determinism_cost.json (about 30 s on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from pathlib import Path

import torch

from iwgan.core.methods import METHOD_NAMES
from iwgan.engine.config import make_config
from iwgan.engine.records import git_state, now
from iwgan.engine.trainer import train
from iwgan.experiments.mode_coverage import evaluate
from iwgan.files import write_json

OUT = Path("results") / "benchmarks" / "determinism_cost.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iterations", type=int, default=100, help="iterations per timing")
    p.add_argument("--repeats", type=int, default=3, help="timings per setting")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    record = {"profile": "quick", "iterations": args.iterations, "repeats": args.repeats,
              "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()[0],
              "platform": platform.platform(), "commit": git_state()["commit"], "date": now(),
              "methods": {}}
    for method in METHOD_NAMES:
        seconds = {False: [], True: []}
        samples = {}
        train(make_config("quick", method=method, iterations=5))  # warm-up
        for _ in range(args.repeats):
            for det in (False, True):
                cfg = make_config("quick", method=method, iterations=args.iterations,
                                  deterministic=det)
                [result] = train(cfg)
                seconds[det].append(result.wall_time)
                samples[det] = evaluate(cfg, result.models)[1]
        off, on = statistics.median(seconds[False]), statistics.median(seconds[True])
        record["methods"][method] = {
            "ms_per_iteration_off": round(1000 * off / args.iterations, 3),
            "ms_per_iteration_on": round(1000 * on / args.iterations, 3),
            "cost_pct": round(100 * (on / off - 1), 1),
            "identical_samples": samples[False].tobytes() == samples[True].tobytes(),
            "seconds_off": [round(s, 4) for s in seconds[False]],
            "seconds_on": [round(s, 4) for s in seconds[True]]}
        print(method, record["methods"][method], flush=True)
    torch.use_deterministic_algorithms(False)
    write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
