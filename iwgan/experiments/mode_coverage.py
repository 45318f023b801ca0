"""The mode-coverage experiment: every method x mixture x preset x seed trained, scored
under the 3-std protocol (iwgan.metrics.mixture) and recorded, with the curve that says
whether it converged (iwgan.metrics.plateau).

``python -m iwgan mode-coverage`` (``nox -s mode_coverage``). A unit of the grid is one
stack of runs (iwgan.engine.stacking; one run where stacking does not pay); each member
gets the record of a single run: ``runs/<run>/`` (config.json and manifest.json before
training, log.jsonl, metrics.json, samples.npy, checkpoint.pt) and one row of
``results/mode_coverage.csv``, written as soon as its unit finishes, with its evaluation
samples copied to ``results/mode_coverage_samples/<run>.npy`` at the same moment.

Every run is evaluated ``curve_points`` times (16 by default) on the way
(``iwgan.metrics.plateau.curve_every``):
modes, HQ % and KL on ``eval_samples`` draws and the exact W1 on ``CURVE_W1_SAMPLES``
against a fixed real set, all from generators of the run's own (common random numbers
along the curve; training's stream is not touched). The curves go to
``results/mode_coverage_curves.csv``; the plateau rule on them gives the row's
``converged``.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from iwgan.core.methods import get_method
from iwgan.data.mixtures import MIXTURES, PRESETS, get_mixture
from iwgan.engine.devices import configure_torch
from iwgan.engine.executors import (
    ExecutorOptions,
    LocalExecutor,
    executor_options,
    open_executor,
)
from iwgan.engine.grid import unfinished
from iwgan.engine.records import (
    REPO_ROOT,
    RunDir,
    check_run_dirs,
    curve_frame,
    manifest,
    manifest_columns,
    now,
    read_results,
    save_npy,
    save_torch,
    upsert_curves,
    upsert_results,
    write_json,
)
from iwgan.engine.seeds import derived_generator
from iwgan.engine.stacking import plan_stacks
from iwgan.engine.trainer import Evaluate, LogTo, Progress, train
from iwgan.experiments.common import add_grid_arguments, finish_grid, grid_configs
from iwgan.metrics.mixture import (
    EvalData,
    compute_metrics,
    score_modes,
    w1_exact,
    w1_floor,
    w1_unavailable,
)
from iwgan.metrics.plateau import assessable, curve_every, plateau

NAN_METRICS = {"modes": np.nan, "hq_pct": np.nan, "kl": np.nan, "w1": np.nan,
               "recon_error": np.nan, "latent_mmd": np.nan}
CURVE_W1_SAMPLES = 500
CURVE_METRICS = ("modes", "hq_pct", "kl", "w1")


class Curve:
    """A run's evaluation curve: one record per evaluation (the ``Evaluate`` hook's fn)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.mixture = get_mixture(cfg.mixture, cfg.preset)
        gen = derived_generator(cfg.seed, "curve-reference")
        self.z = torch.randn(cfg.eval_samples, cfg.z_dim, generator=gen)
        self.real = self.mixture.sample(CURVE_W1_SAMPLES, generator=gen).numpy()
        self.records: list[dict] = []
        self.train_seconds = 0.0
        self.seconds = 0.0
        self.w1_missing = w1_unavailable()   # None, or why W1 stays empty

    def on_log(self, record: dict) -> None:
        self.train_seconds = record["wall_time"]

    def __call__(self, it: int, models) -> None:
        start = time.perf_counter()
        samples = get_method(self.cfg.method).generate(models, self.z).numpy()
        self.records.append({
            "iteration": it, "train_seconds": self.train_seconds if it else 0.0,
            **score_modes(samples, self.mixture.centres, self.mixture.std),
            "w1": (np.nan if self.w1_missing
                   else w1_exact(samples[:CURVE_W1_SAMPLES], self.real))})
        self.seconds += time.perf_counter() - start

    def verdict(self, iterations: int) -> dict:
        """The plateau rule on this curve (NaN when too few evaluations fall in the last
        quarter of ``iterations``, e.g. a run stopped early, or no W1: the rule reads
        it)."""
        if self.w1_missing or not assessable(self.records, iterations):
            return {"converged": np.nan}
        floor = w1_floor(self.cfg.mixture, self.cfg.preset, CURVE_W1_SAMPLES)
        return plateau(self.records, iterations, floor)


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
            "ema": cfg.ema, "config_hash": cfg.hash(), "cell": cfg.cell_key(),
            **manifest_columns(record), "stacked": stacked}


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
    curves = [Curve(c) for c in unit]
    hooks = [LogTo([lambda r, d=d, c=c: (d.log(r), c.on_log(r)) for d, c in zip(dirs, curves)]),
             Evaluate(lambda k, it, models: curves[k](it, models),
                      curve_every(unit[0].iterations, unit[0].curve_points))]
    results = train(unit, hooks=hooks + ([Progress(progress)] if progress else []))
    rows = []
    for cfg, run, record, result, curve in zip(unit, dirs, records, results, curves):
        row = base_row(cfg, record, len(unit))
        if curve.w1_missing:   # W1 and the converged flag stay empty, and the row says why
            row["w1_unavailable"] = curve.w1_missing
        run.write("curve.json", curve.records)
        if result.status == "diverged":
            row.update(status="diverged", diverged_at=result.diverged_at,
                       iterations_run=result.diverged_at, train_seconds=result.wall_time,
                       eval_seconds=0.0, curve_seconds=curve.seconds, **NAN_METRICS,
                       converged=False, finished=now())
            run.write("metrics.json", {**row, "error": f"non-finite loss at iteration "
                                                        f"{result.diverged_at}"})
        else:
            eval_start = time.perf_counter()
            metrics, samples = evaluate(cfg, result.models)
            row.update(status=result.status, diverged_at=np.nan,
                       iterations_run=result.iterations, train_seconds=result.wall_time,
                       eval_seconds=time.perf_counter() - eval_start,
                       curve_seconds=curve.seconds, **metrics,
                       **curve.verdict(result.iterations))
            save_npy(run.path / "samples.npy", samples)
            save_torch(run.path / "checkpoint.pt", result.checkpoint())
            row["finished"] = now()
            run.write("metrics.json", row)
        run.write("manifest.json", {**record, "finished": row["finished"]})
        rows.append((row, curve_frame(curve.records, row, CURVE_METRICS)))
    return rows


def failed_unit(unit, error: str) -> list:
    """The rows of a unit whose worker failed twice (iwgan.engine.executors): recorded,
    never lost; ``--resume`` runs them again."""
    out = []
    for cfg in unit:
        row = base_row(cfg, manifest(cfg, stacked=[c.run_id for c in unit]), len(unit))
        row.update(status="failed", error=error, diverged_at=np.nan, iterations_run=0,
                   train_seconds=np.nan, eval_seconds=0.0, **NAN_METRICS, converged=False,
                   finished=now())
        out.append((row, curve_frame([], row, CURVE_METRICS)))
    return out


def run_mode_coverage(configs, results_csv: Path, runs_root: Path, jobs: int = 1,
                      resume: bool = False, stack: str = "auto",
                      max_stack: int | None = None, samples_dir: Path | None = None,
                      executor=None) -> list:
    """The mode-coverage grid: one results row per run, written as each unit finishes
    (``stack``: auto | on | off, iwgan.engine.stacking.plan_stacks), and each finished
    run's evaluation samples copied to ``samples_dir`` at the same moment. ``executor``
    (iwgan.engine.executors) runs the units; default: ``jobs`` local processes."""
    if resume:
        configs = unfinished(configs, results_csv)
    units = plan_stacks(configs, stack, max_stack)
    curves_csv = Path(results_csv).with_name(Path(results_csv).stem + "_curves.csv")

    def record(pairs):
        rows = [row for row, _ in pairs]
        upsert_results(results_csv, rows)
        upsert_curves(curves_csv, [curve for _, curve in pairs])
        for row in rows:
            src = Path(runs_root) / row["run_id"] / "samples.npy"
            if samples_dir is not None and row["status"] != "diverged" and src.exists():
                save_npy(Path(samples_dir) / f"{row['run_id']}.npy", np.load(src))
            if row["status"] == "diverged":
                tqdm.write(f"{row['run_id']}: diverged at iteration {row['diverged_at']}")

    executor = executor or LocalExecutor(ExecutorOptions(jobs=jobs))
    done = executor.run(units, functools.partial(run_unit, runs_root=runs_root), record,
                        failed_unit)
    return [row for pairs in done for row, _ in pairs]


def add_arguments(p) -> None:
    add_grid_arguments(p)


def command(args) -> int:
    configs = grid_configs(args)
    check_run_dirs(args.out / "runs", configs)
    results = args.out / "results"
    csv = results / "mode_coverage.csv"
    if csv.exists():
        read_results(csv, damaged="warn")  # refuse a file of another schema
    with open_executor(executor_options(args)) as executor:   # reachable, before writing
        write_json(results / "mixtures.json", {f"{m}-{p}": get_mixture(m, p).to_json()
                                               for p in PRESETS for m in MIXTURES})
        start = time.perf_counter()
        rows = run_mode_coverage(configs, csv, args.out / "runs", resume=args.resume,
                                 stack=args.stack, max_stack=args.max_stack,
                                 samples_dir=results / "mode_coverage_samples",
                                 executor=executor)
    rc = finish_grid(args, "mode_coverage", configs, rows, time.perf_counter() - start)
    if configs[0].profile != "converged":
        reference = committed_reference()
        if reference is None:
            print("no distance from a converged reference: the committed "
                  "results/mode_coverage.csv has no converged rows yet (docs/converged.md)")
        else:   # the whole grid's rows, those a --resume skipped too
            ids = {c.run_id for c in configs}
            grid = read_results(csv, damaged="drop")
            for line in distance_to_reference(grid[grid.run_id.isin(ids)], reference):
                print(line)
    return rc


def committed_reference() -> pd.DataFrame | None:
    """The converged rows of the suite's committed results/mode_coverage.csv, if any."""
    path = REPO_ROOT / "results" / "mode_coverage.csv"
    if not path.exists():
        return None
    df = read_results(path)
    df = df[(df.profile == "converged") & df.status.isin(["finished", "stopped_early"])]
    return df if len(df) else None


def distance_to_reference(rows: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    """Each cell of this grid against the committed converged reference: means over seeds
    of modes, HQ % and W1, and the difference."""
    keys = ["preset", "mixture", "method"]
    ok = rows[rows.status.isin(["finished", "stopped_early"])]
    if ok.empty:
        return []
    ours = ok.groupby(keys)[["modes", "hq_pct", "w1"]].mean()
    ref = reference.groupby(keys)[["modes", "hq_pct", "w1"]].mean()
    lines = [f"distance of each cell from the committed converged reference "
             f"({int(reference.iterations.iloc[0]):,} iterations; this grid: "
             f"{int(ok.iterations.iloc[0]):,}): this grid (reference, difference)"]
    for key, a in ours.iterrows():
        if key not in ref.index:
            continue
        b = ref.loc[key]
        lines.append(f"  {key[0]:<10} {key[1]:<6} {key[2]:<9} "
                     f"modes {a.modes:5.1f} ({b.modes:4.1f}, {a.modes - b.modes:+5.1f})  "
                     f"HQ % {a.hq_pct:5.1f} ({b.hq_pct:5.1f}, {a.hq_pct - b.hq_pct:+6.1f})  "
                     f"W1 {a.w1:.3f} ({b.w1:.3f}, {a.w1 - b.w1:+.3f})")
    return lines if len(lines) > 1 else []
