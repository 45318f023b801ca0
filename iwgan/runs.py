"""One run, end to end: train, evaluate, record. Used by every mixture experiment."""

from __future__ import annotations

import time

import numpy as np
import torch

from iwgan.methods import get_method
from iwgan.metrics import EvalData, compute_metrics
from iwgan.mixtures import get_mixture
from iwgan.records import RunDir, manifest, now, save_npy, save_torch
from iwgan.training import Diverged, configure_torch, derived_generator, train


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


def run_one(cfg, runs_root, progress=None) -> dict:
    """Train and evaluate one config; returns its results row. A diverged run is recorded
    with its iteration and NaN metrics instead of raising."""
    run = RunDir(runs_root, cfg)
    configure_torch(cfg)  # before the manifest, so it records the run's thread count
    record = manifest(cfg)
    run.write("config.json", cfg.to_dict())
    run.write("manifest.json", record)
    row = {"run_id": cfg.run_id, "method": cfg.method, "mixture": cfg.mixture,
           "preset": cfg.preset, "seed": cfg.seed, "profile": cfg.profile,
           "iterations": cfg.iterations, "width": cfg.width, "batch_size": cfg.batch_size,
           "config_hash": cfg.hash(), **manifest_columns(record), "batch_seeds": 1}
    start = time.perf_counter()
    try:
        result = train(cfg, on_log=run.log, progress=progress)
    except Diverged as err:
        metrics = {"modes": np.nan, "hq_pct": np.nan, "kl": np.nan, "w1": np.nan,
                   "recon_error": np.nan, "latent_mmd": np.nan}
        row.update(status="diverged", diverged_at=err.iteration, iterations_run=err.iteration,
                   train_seconds=time.perf_counter() - start, eval_seconds=0.0, **metrics,
                   finished=now())
        run.write("metrics.json", {**row, "error": str(err)})
        run.write("manifest.json", {**record, "finished": row["finished"]})
        return row
    eval_start = time.perf_counter()
    metrics, samples = evaluate(cfg, result.models)
    row.update(status="stopped_early" if result.stopped_early else "finished",
               diverged_at=np.nan, iterations_run=result.iterations,
               train_seconds=result.wall_time,
               eval_seconds=time.perf_counter() - eval_start, **metrics)
    save_npy(run.path / "samples.npy", samples)
    save_torch(run.path / "checkpoint.pt", {"config": cfg.to_dict(),
                                            **result.models.state_dict()})
    finished = now()
    row["finished"] = finished
    run.write("metrics.json", row)
    run.write("manifest.json", {**record, "finished": finished})
    return row


def manifest_columns(record: dict) -> dict:
    """The manifest, flattened into the results row, so every row is traceable."""
    return {"commit": record["commit"], "dirty": record["dirty"],
            "command": record["command"], "python": record["python"],
            "torch": record["packages"]["torch"], "numpy": record["packages"]["numpy"],
            "scipy": record["packages"]["scipy"], "pot": record["packages"]["pot"],
            "platform": record["platform"], "device": record["device"],
            "threads": record["threads"],
            "deterministic": record["deterministic"]["use_deterministic_algorithms"],
            "started": record["started"]}
