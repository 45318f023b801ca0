"""Command-line entry point: ``python -m iwgan <command> --help``.

Every nox session calls one of these commands, so anything a session does can be run
directly. Bad input is refused before anything is written, with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from iwgan.config import PROFILES, make_config
from iwgan.methods import METHOD_NAMES
from iwgan.mixtures import MIXTURES, PRESETS


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def default_profile() -> str:
    return "paper" if torch.cuda.is_available() else "quick"


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", nargs="+", default=list(METHOD_NAMES), choices=METHOD_NAMES,
                   metavar="METHOD", help=f"methods to run (default: all of {METHOD_NAMES})")
    p.add_argument("--mixtures", nargs="+", default=list(MIXTURES), choices=MIXTURES,
                   metavar="MIXTURE", help=f"mixtures (default: {' '.join(MIXTURES)})")
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS,
                   metavar="PRESET", help=f"mixture presets (default: {' '.join(PRESETS)})")
    p.add_argument("--profile", default=None, choices=list(PROFILES),
                   help="budget and widths (default: paper on CUDA, quick otherwise)")
    p.add_argument("--seeds", type=positive_int, default=3, help="number of seeds (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--iterations", type=positive_int, help="override the profile's iterations")
    p.add_argument("--batch-size", type=positive_int, help="override the profile's batch size")
    p.add_argument("--stop-rule", action="store_true",
                   help="stop iWGAN runs by Algorithm 1's rule (iwgan only)")
    p.add_argument("--out", type=Path, default=Path("."),
                   help="root of results/, runs/ and reports/ (default: .)")
    p.add_argument("--jobs", type=positive_int, default=2, help="parallel processes (default 2)")
    p.add_argument("--resume", action="store_true",
                   help="skip runs already finished with the same config in results/")
    p.add_argument("--no-report", action="store_true", help="do not rebuild the report")
    p.add_argument("--batch-seeds", choices=("auto", "on", "off"), default="auto",
                   help="train a cell's seeds as one batched model (iwgan.batched): auto "
                   "where it is faster (CUDA; CPU at small widths such as quick), on "
                   "(refuses what cannot be batched), off (one run per seed); batched "
                   "members equal sequential runs within float rounding "
                   "(docs/throughput.md) (default auto)")


def grid_configs(args) -> list:
    profile = args.profile or default_profile()
    if args.first_seed < 0:
        raise ValueError(f"--first-seed must be non-negative, got {args.first_seed}")
    return [make_config(profile, method=m, mixture=x, preset=p, seed=s,
                        iterations=args.iterations, batch_size=args.batch_size,
                        stop_rule=args.stop_rule or None)
            for p in args.presets for x in args.mixtures for m in args.methods
            for s in range(args.first_seed, args.first_seed + args.seeds)]


def cmd_mode_coverage(args) -> int:
    from iwgan.grid import run_mode_coverage
    from iwgan.mixtures import get_mixture
    from iwgan.records import read_results, write_json

    configs = grid_configs(args)
    results = args.out / "results"
    csv = results / "mode_coverage.csv"
    if csv.exists():
        read_results(csv)  # refuse to append to a file of another schema
    write_json(results / "mixtures.json",
               {f"{m}-{p}": get_mixture(m, p).to_json() for p in PRESETS for m in MIXTURES})
    start = time.perf_counter()
    rows = run_mode_coverage(configs, csv, args.out / "runs", jobs=args.jobs,
                             resume=args.resume, batch_seeds=args.batch_seeds)
    wall = time.perf_counter() - start
    save_samples(rows, args.out / "runs", results / "mode_coverage_samples")
    return finish_grid(args, "mode_coverage", configs, rows, wall)


def finish_grid(args, experiment: str, configs, rows, wall: float) -> int:
    """Record the grid's wall time, say what diverged, rebuild the experiment's report."""
    import importlib

    results = args.out / "results"
    record_wall_time(results / "benchmarks" / f"{experiment}_wall_time.json", configs, rows,
                     wall, args.jobs)
    diverged = [r["run_id"] for r in rows if r["status"] == "diverged"]
    print(f"{len(rows)} runs in {wall:.0f} s; {len(diverged)} diverged"
          + (f": {', '.join(diverged)}" if diverged else ""))
    if not args.no_report:
        report = importlib.import_module(f"iwgan.reporting.{experiment}")
        print(f"report: {report.build_report(results, args.out / 'reports')}")
    return 0


def save_samples(rows, runs_root: Path, dest: Path) -> None:
    """Copy each finished run's evaluation samples next to the committed results."""
    import numpy as np

    from iwgan.records import save_npy

    for row in rows:
        src = runs_root / row["run_id"] / "samples.npy"
        if src.exists():
            save_npy(dest / f"{row['run_id']}.npy", np.load(src))


def record_wall_time(path: Path, configs, rows, wall: float, jobs: int) -> None:
    import os
    import platform

    from iwgan.records import now, write_json

    record = json.loads(path.read_text()) if path.exists() else {}
    profiles = sorted({c.profile for c in configs})
    record[",".join(profiles)] = {
        "runs": len(rows), "wall_seconds": round(wall, 1), "jobs": jobs,
        "methods": sorted({c.method for c in configs}),
        "mixtures": sorted({c.mixture for c in configs}),
        "presets": sorted({c.preset for c in configs}),
        "seeds": sorted({c.seed for c in configs}),
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "date": now(),
        # Other processes on the machine inflate wall time: the 1-, 5- and 15-minute load
        # averages at the end of the grid say how busy it was.
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    write_json(path, record)


def cmd_convergence(args) -> int:
    import dataclasses

    from iwgan.convergence import ConvergenceOptions, record_thresholds, run_convergence_grid

    opts = ConvergenceOptions(eval_every=args.eval_every, gap_steps=args.gap_steps,
                              w1_samples=args.w1_samples, alpha=args.alpha)
    # Every iteration logged: Algorithm 1's stopping rule is replayed on the full history.
    configs = [dataclasses.replace(c, log_every=1) for c in grid_configs(args)]
    results = args.out / "results"
    record_thresholds(results / "convergence_thresholds.json", configs, opts)
    start = time.perf_counter()
    rows = run_convergence_grid(configs, opts, args.out, jobs=args.jobs, resume=args.resume,
                                batch_seeds=args.batch_seeds)
    wall = time.perf_counter() - start
    return finish_grid(args, "convergence", configs, rows, wall)


def cmd_reports(args) -> int:
    from iwgan.reporting import build_all

    for path in build_all(args.out / "results", args.out / "reports"):
        print(f"report: {path}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iwgan", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("mode-coverage", help="mixture grid: modes, HQ %%, KL, W1",
                       description="Train every method x mixture x preset x seed and score "
                       "mode coverage under the 3-std protocol; then rebuild the report.")
    add_grid_arguments(p)
    p.set_defaults(func=cmd_mode_coverage)
    p = sub.add_parser("convergence", help="duality gap vs exact W1 over training, latent "
                       "space, quality score", description="Train every method x mixture x "
                       "seed with the duality gap of eq. (4), exact W1 and mode coverage "
                       "every M iterations, then the latent, quality-score and interpolation "
                       "analyses; then rebuild reports/convergence.md.")
    add_grid_arguments(p)
    p.set_defaults(presets=["paper"], seeds=5)
    for action in p._actions:  # the grid's help states its own defaults
        if action.dest in ("presets", "seeds"):
            action.help = action.help.split(" (default")[0] + f" (default {action.default})"
    p.add_argument("--eval-every", type=positive_int, default=250,
                   help="M: iterations between evaluations (default 250)")
    p.add_argument("--gap-steps", type=positive_int, default=15,
                   help="Adam steps of the sup and of the inf copy in eq. (4) (default 15)")
    p.add_argument("--w1-samples", type=positive_int, default=1000,
                   help="points per side of the W1 curves (default 1000)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="HDR coverage is 1 - alpha, alpha in (0, 1) (default 0.05)")
    p.set_defaults(func=cmd_convergence)
    p = sub.add_parser("reports", help="rebuild reports/ from results/ alone")
    p.add_argument("--out", type=Path, default=Path("."), help="root of results/ and reports/")
    p.set_defaults(func=cmd_reports)
    from iwgan import regression

    p = sub.add_parser("regression", help="metric-drift check against committed references",
                       description="Re-run a small seeded subset of every experiment kind, "
                       "compare its metrics with results/regression/reference.csv (explicit "
                       "per-metric tolerances, docs/reproducibility.md), print the drift "
                       "table and write reports/regression.md; exit 1 on any drift.")
    regression.add_arguments(p)
    p.set_defaults(func=regression.command)
    from iwgan import images

    p = sub.add_parser("images", help="MNIST / CelebA / digits: train, FID or FD, figures",
                       description="Train every method x seed on one image dataset "
                       "(Section 5.2), resumable from checkpoints; score FID (or FD-<data>CNN "
                       "offline); save the figure arrays; then rebuild reports/<dataset>.md.")
    images.add_arguments(p)
    p.set_defaults(func=images.command)
    from iwgan import throughput

    p = sub.add_parser("throughput", help="benchmarks: samples/s, suite overhead, batched "
                       "seeds, GPU fast path", description="Run the benchmarks in benchmarks/ "
                       "(pytest-benchmark), write results/throughput/<device>.json with the "
                       "run manifest and rebuild reports/throughput.md.")
    throughput.add_arguments(p)
    p.set_defaults(func=throughput.command)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # bad input: a clear message, non-zero exit
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are recorded in results/; --resume skips them",
              file=sys.stderr)
        return 130
