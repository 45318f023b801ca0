"""Scale-out, measured: each grid executor's overhead on a tiny grid against local
processes, and how far two data-parallel processes end from one on the same global batch.

    python benchmarks/scale_out.py

Writes results/benchmarks/scale_out.json: the wall time of the same tiny mode-coverage grid
(`--profile tiny`, 4 methods x RING x 2 seeds, one run per unit) through the local
executor (2 processes), a Dask LocalCluster (2 workers) and submitit's local executor (2
at a time), each from a fresh output folder, and the largest difference between the
weights of a digits run trained by one process and by two (torchrun, gloo), relative to
the largest weight.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from iwgan.engine.config import make_image_config
from iwgan.engine.records import REPO_ROOT, now
from iwgan.files import write_json

OUT = Path("results") / "benchmarks" / "scale_out.json"
GRID = ["-m", "iwgan", "mode-coverage", "--profile", "tiny", "--mixtures", "ring",
        "--presets", "paper", "--seeds", "2", "--stack", "off", "--jobs", "2", "--no-report"]
EXECUTORS = {"local": [], "dask": ["--executor", "dask"],
             "slurm (submitit local)": ["--executor", "slurm", "--slurm-local"]}


def timed(cmd, cwd) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def ddp_difference(tmp: Path, method: str = "wgan_gp", iterations: int = 6) -> float:
    cfg = make_image_config("digits", "smoke", method=method, iterations=iterations,
                            device="cpu")
    states = []
    for n in (1, 2):
        out = tmp / f"ddp{n}"
        launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                     f"--nproc_per_node={n}"] if n > 1 else [sys.executable])
        timed([*launcher, "-m", "iwgan", "images", "--dataset", "digits", "--profile",
               "smoke", "--methods", method, "--iterations", str(iterations), "--device",
               "cpu", "--out", str(out), "--cache-dir", str(tmp / "cache"), "--no-report"],
              REPO_ROOT)
        states.append(torch.load(out / "runs" / cfg.run_id / "checkpoint.pt",
                                 weights_only=True)["members"]["params"])
    scale = max(float(t.abs().max()) for t in states[0].values())
    return max(float((states[0][k] - states[1][k]).abs().max()) for k in states[0]) / scale


def main() -> int:
    record = {"date": now(), "cpu_count": os.cpu_count(), "runs": 8, "executors": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, extra) in enumerate(EXECUTORS.items()):
            wall = timed([sys.executable, *GRID, *extra, "--out", f"{tmp}/grid{i}"],
                         REPO_ROOT)
            record["executors"][name] = {"wall_seconds": round(wall, 1)}
            print(f"{name}: {wall:.1f} s", flush=True)
        local = record["executors"]["local"]["wall_seconds"]
        for v in record["executors"].values():
            v["overhead_vs_local"] = round(v["wall_seconds"] / local - 1, 3)
        record["ddp_max_relative_weight_difference"] = ddp_difference(Path(tmp))
    record["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"DDP (2 processes vs 1, wgan_gp, 6 iterations): max |difference| / max |weight| "
          f"= {record['ddp_max_relative_weight_difference']:.2e}")
    write_json(OUT, record)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
