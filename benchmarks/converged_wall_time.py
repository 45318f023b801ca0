"""The converged table's wall time from a clean tree: the committed grid (`nox -s
mode_coverage -- --profile converged --max-stack 15`: 4 methods x 3 mixtures x 2 presets x
5 seeds, 120 runs, K = 15 stacks, --jobs 2), run into a fresh output folder so that
nothing is resumed, with the load average before and after and the CPU model.

    python benchmarks/converged_wall_time.py [--adam torch|fused] [--jobs 2]

Writes results/benchmarks/converged_wall_time.json, one record per Adam arithmetic
(``torch``: the default, the path the committed table was made by; ``fused``: the fast
path, docs/throughput.md). Takes 45-100 minutes on the 2-core machine: run it on a quiet
one (nothing else running; the record keeps the load it got).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from iwgan.engine.devices import bf16_matmul_path, cpu_model
from iwgan.engine.records import REPO_ROOT, git_state, now
from iwgan.files import write_json

OUT = Path("results") / "benchmarks" / "converged_wall_time.json"
GRID = ["-m", "iwgan", "mode-coverage", "--profile", "converged", "--max-stack", "15",
        "--no-report"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--adam", choices=("torch", "fused"), default="torch")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    record = {"grid": " ".join(GRID[2:]), "adam": args.adam, "jobs": args.jobs,
              "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "matmul_path": bf16_matmul_path()[1], "torch": torch.__version__,
              "platform": platform.platform(), **git_state(), "started": now(),
              "load_average_at_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, *GRID, "--jobs", str(args.jobs), "--out", tmp,
               *(["--set", f"adam={args.adam}"] if args.adam != "torch" else [])]
        start = time.perf_counter()
        rc = subprocess.run(cmd, cwd=REPO_ROOT).returncode
        record["wall_seconds"] = round(time.perf_counter() - start, 1)
        record["load_average_at_end"] = list(os.getloadavg())
        grid_file = Path(tmp) / "results" / "benchmarks" / "mode_coverage_wall_time.json"
        if grid_file.exists():   # the session's own record (training time only)
            record["session_record"] = json.loads(grid_file.read_text())
    record.update(exit_code=rc, finished=now())
    path = args.out
    records = json.loads(path.read_text()) if path.exists() else {}
    records[args.adam] = record
    write_json(path, records)
    print(f"{args.adam}: {record['wall_seconds']} s (exit {rc}), load "
          f"{record['load_average_at_start']} -> {record['load_average_at_end']}; {path}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
