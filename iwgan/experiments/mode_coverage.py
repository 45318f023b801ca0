"""The mode-coverage experiment: every method x mixture x preset x seed trained, scored
under the 3-std protocol (iwgan.metrics.mixture) and recorded.

``python -m iwgan mode-coverage`` (``nox -s mode_coverage``). A unit of the grid is one
stack of runs (iwgan.engine.stacking; one run where stacking does not pay); each member
gets the record of a single run: ``runs/<run>/`` (config.json and manifest.json before
training, log.jsonl, metrics.json, samples.npy, checkpoint.pt) and one row of
``results/mode_coverage.csv``, written as soon as its unit finishes, with its evaluation
samples copied to ``results/mode_coverage_samples/<run>.npy`` at the same moment.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from iwgan.core.methods import get_method
from iwgan.data.mixtures import MIXTURES, PRESETS, get_mixture
from iwgan.engine.devices import configure_torch
from iwgan.engine.grid import run_grid, unfinished
from iwgan.engine.records import (
    RunDir,
    manifest,
    manifest_columns,
    now,
    read_results,
    save_npy,
    save_torch,
    upsert_results,
    write_json,
)
from iwgan.engine.seeds import derived_generator
from iwgan.engine.stacking import plan_stacks
from iwgan.engine.trainer import LogTo, Progress, train
from iwgan.experiments.common import add_grid_arguments, finish_grid, grid_configs
from iwgan.metrics.mixture import EvalData, compute_metrics

NAN_METRICS = {"modes": np.nan, "hq_pct": np.nan, "kl": np.nan, "w1": np.nan,
               "recon_error": np.nan, "latent_mmd": np.nan}


def evaluate(cfg, models) -> tuple[dict, np.ndarray]:
    """Final metrics on ``eval_samples`` draws from an evaluation-only generator."""
    method = get_method(cfg.method)
    mixture = get_mixture(cfg.mixture, cfg.preset)
    gen = derived_generator(cfg.seed, "evaluation")
    z = torch.randn(cfg.eval_samples, cfg.z_dim, generator=gen)
    real = mixture.sample(cfg.eval_samples, generator=gen)
    prior = torch.randn(cfg.eval_samples, cfg.z_dim, generator=gen)
    samples = method.generate(models, z)
    data = EvalData(samples=samples.numpy(), real=real.numpy(), centres=mixture.centres,
                    std=mixture.std)
    if method.HAS_ENCODER:
        codes = method.encode(models, real)
        recon = method.generate(models, codes)
        data.reconstruction_errors = (real - recon).norm(dim=1).numpy()
        data.codes, data.prior = codes.numpy(), prior.numpy()
    return compute_metrics(data), data.samples.astype(np.float32)


def base_row(cfg, record: dict, stacked: int) -> dict:
    """The columns every mixture run's results row starts with."""
    return {"run_id": cfg.run_id, "method": cfg.method, "mixture": cfg.mixture,
            "preset": cfg.preset, "seed": cfg.seed, "profile": cfg.profile,
            "iterations": cfg.iterations, "width": cfg.width, "batch_size": cfg.batch_size,
            "lr": cfg.lr, "lr_schedule": cfg.lr_schedule, "n_critic": cfg.n_critic,
            "config_hash": cfg.hash(), "cell": cfg.cell_key(), **manifest_columns(record),
            "stacked": stacked}


def run_unit(unit, runs_root: Path, progress=None) -> list[dict]:
    """Train a unit's configs as one model, then evaluate and record every member as a
    single run; returns one results row per member."""
    unit = list(unit)
    configure_torch(unit[0])  # before the manifests, so they record the run's threads
    dirs = [RunDir(runs_root, c) for c in unit]
    records = []
    for c, run in zip(unit, dirs):
        records.append(manifest(c, stacked=[m.run_id for m in unit]))
        run.write("config.json", c.to_dict())
        run.write("manifest.json", records[-1])
    hooks = [LogTo([d.log for d in dirs])] + ([Progress(progress)] if progress else [])
    results = train(unit, hooks=hooks)
    rows = []
    for cfg, run, record, result in zip(unit, dirs, records, results):
        row = base_row(cfg, record, len(unit))
        if result.status == "diverged":
            row.update(status="diverged", diverged_at=result.diverged_at,
                       iterations_run=result.diverged_at, train_seconds=result.wall_time,
                       eval_seconds=0.0, **NAN_METRICS, finished=now())
            run.write("metrics.json", {**row, "error": f"non-finite loss at iteration "
                                                        f"{result.diverged_at}"})
        else:
            eval_start = time.perf_counter()
            metrics, samples = evaluate(cfg, result.models)
            row.update(status=result.status, diverged_at=np.nan,
                       iterations_run=result.iterations, train_seconds=result.wall_time,
                       eval_seconds=time.perf_counter() - eval_start, **metrics)
            save_npy(run.path / "samples.npy", samples)
            save_torch(run.path / "checkpoint.pt", result.checkpoint())
            row["finished"] = now()
            run.write("metrics.json", row)
        run.write("manifest.json", {**record, "finished": row["finished"]})
        rows.append(row)
    return rows


def run_mode_coverage(configs, results_csv: Path, runs_root: Path, jobs: int = 1,
                      resume: bool = False, stack: str = "auto",
                      max_stack: int | None = None, samples_dir: Path | None = None) -> list:
    """The mode-coverage grid: one results row per run, written as each unit finishes
    (``stack``: auto | on | off, iwgan.engine.stacking.plan_stacks), and each finished
    run's evaluation samples copied to ``samples_dir`` at the same moment."""
    if resume:
        configs = unfinished(configs, results_csv)
    units = plan_stacks(configs, stack, max_stack)

    def record(rows):
        upsert_results(results_csv, rows)
        for row in rows:
            src = Path(runs_root) / row["run_id"] / "samples.npy"
            if samples_dir is not None and row["status"] != "diverged" and src.exists():
                save_npy(Path(samples_dir) / f"{row['run_id']}.npy", np.load(src))
            if row["status"] == "diverged":
                tqdm.write(f"{row['run_id']}: diverged at iteration {row['diverged_at']}")

    done = run_grid(units, functools.partial(run_unit, runs_root=runs_root), record, jobs)
    return [row for rows in done for row in rows]


def add_arguments(p) -> None:
    add_grid_arguments(p)


def command(args) -> int:
    configs = grid_configs(args)
    results = args.out / "results"
    csv = results / "mode_coverage.csv"
    if csv.exists():
        read_results(csv)  # refuse to append to a file of another schema
    write_json(results / "mixtures.json",
               {f"{m}-{p}": get_mixture(m, p).to_json() for p in PRESETS for m in MIXTURES})
    start = time.perf_counter()
    rows = run_mode_coverage(configs, csv, args.out / "runs", jobs=args.jobs,
                             resume=args.resume, stack=args.stack, max_stack=args.max_stack,
                             samples_dir=results / "mode_coverage_samples")
    return finish_grid(args, "mode_coverage", configs, rows, time.perf_counter() - start)
