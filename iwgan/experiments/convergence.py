"""Convergence, measured: the duality gap of eq. (4) against the exact W1 over training.

Every ``eval_every`` (M) iterations of a run, on held-out draws only:

    dual_gap     eq. (4) estimated on copies of the networks (iwgan.core.duality_gap:
                 ``gap_steps`` Adam steps of a sup copy of f and of an inf copy of
                 (G, Q), both values on a held-out set); wgan_gp gets the analogous WGAN
                 gap; ALI and alpha-GAN use their logit discriminator as f, and the
                 report says so;
    gap_cheap_heldout  primal - dual = mean ||x - G(Q(x))|| - (mean f(x) - mean f(G(z)))
                 on the held-out set (encoder methods);
    gap_cheap_batch    the same on the training batch, as iWGAN's training logs it;
    w1           exact W1 (POT) between ``w1_samples`` real and generated points;
    w1_recon, w1_latent  the two terms of Theorem 2.2, W1(P_X, P_G(Q(X))) and
                 W1(P_G(Q(X)), P_G(Z)), on ``decomposition_samples`` points (encoders);
    modes, hq_pct, kl   the 3-std mode coverage protocol on ``eval_samples`` (2,500) draws.

Randomness: the real reference set and the z's the curves are measured on are drawn once
per run from ``derived_generator(seed, "eval-reference")`` (common random numbers, so that
a change between two points of a curve is the model's, not the sample's); everything else
at iteration ``it`` from ``derived_generator(seed, f"eval-{it}")``. Evaluation never draws
from a training generator and only ever optimises copies, so a run with evaluation ends
with the same weights as a run without (a test checks ``torch.equal``).

The run directory is the record (``runs/convergence/<run>/``): ``config.json``,
``manifest.json``, ``log.jsonl`` (every iteration), ``metric-<name>.jsonl`` (one line per
evaluation), ``metrics.json`` and ``checkpoint.pt``; ``results/`` gets one summary row per
run (``convergence.csv``), the long-format curves (``convergence_curves.csv``) and the
arrays the report plots (``convergence_artifacts/<run>.npz``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import math
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from iwgan.core import quality
from iwgan.core.duality_gap import duality_gap, stop_rule_met
from iwgan.core.methods import get_method
from iwgan.data.mixtures import get_mixture
from iwgan.engine.devices import configure_torch
from iwgan.engine.executors import (
    ExecutorOptions,
    LocalExecutor,
    executor_options,
    open_executor,
)
from iwgan.engine.grid import unfinished
from iwgan.engine.records import (
    RunDir,
    check_run_dirs,
    curve_frame,
    manifest,
    now,
    read_results,
    save_npz,
    save_torch,
    update_json,
    upsert_curves,
    upsert_results,
)
from iwgan.engine.seeds import derived_generator
from iwgan.engine.stacking import plan_stacks
from iwgan.engine.trainer import Evaluate, LogTo, Progress, train
from iwgan.experiments.common import (
    add_grid_arguments,
    finish_grid,
    grid_configs,
    positive_int,
)
from iwgan.experiments.mode_coverage import base_row, evaluate
from iwgan.metrics.mixture import score_modes, w1_exact, w1_floor
from iwgan.metrics.plateau import assessable, check_window, plateau
from iwgan.metrics.statistics import spearman

SNAPSHOT_POINTS = 400
INTERPOLATION_PAIRS = 12
CURVE_METRICS = ("w1", "w1_recon", "w1_latent", "modes", "hq_pct", "kl", "dual_gap",
                 "dual_gap_sup", "dual_gap_inf", "objective_heldout", "gap_cheap_heldout",
                 "gap_cheap_batch", "recon_error")
GAP_ESTIMATES = ("dual_gap", "gap_cheap_heldout", "gap_cheap_batch")
METRIC_FILES = {  # metric-<name>.jsonl in the run directory, stylegan-style
    "w1_ot": ("w1", "w1_recon", "w1_latent"),
    "mode_coverage_3std": ("modes", "hq_pct", "kl"),
    "duality_gap": ("dual_gap", "dual_gap_sup", "dual_gap_inf", "objective_heldout",
                    "gap_cheap_heldout", "gap_cheap_batch", "recon_error"),
}


@dataclass(frozen=True)
class ConvergenceOptions:
    """Options of the convergence experiment (not of training: they never change it)."""

    eval_every: int = 250            # M: iterations between evaluations
    gap_steps: int = 15              # Adam steps of each of the sup and inf copies
    gap_samples: int = 1_000         # held-out points L is evaluated on
    w1_samples: int = 1_000          # points per side of the W1 curve
    decomposition_samples: int = 500  # points per side of Theorem 2.2's two W1 terms
    hq_target: float = 90.0          # criterion (a): all modes and HQ % >= this
    w1_floor_factor: float = 2.0     # criterion (b): W1 <= factor x the real-vs-real floor
    alpha: float = 0.05              # HDR coverage 1 - alpha

    def __post_init__(self):
        for name in ("eval_every", "gap_steps", "gap_samples", "w1_samples",
                     "decomposition_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.w1_floor_factor > 0:
            raise ValueError(f"w1_floor_factor must be positive, got {self.w1_floor_factor}")
        if not 0 <= self.hq_target <= 100:
            raise ValueError(f"hq_target must lie in [0, 100], got {self.hq_target}")
        quality.check_alpha(self.alpha)

    def hash(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# ---------------------------------------------------------------------------------------
# Evaluation every M iterations
# ---------------------------------------------------------------------------------------

class Evaluator:
    """The ``on_eval`` hook: one record per evaluation, appended to the run's
    metric-*.jsonl files; keeps the samples of every evaluation for the figures."""

    def __init__(self, cfg, opts: ConvergenceOptions, run: RunDir | None = None):
        self.cfg, self.opts, self.run = cfg, opts, run
        self.method = get_method(cfg.method)
        self.mixture = get_mixture(cfg.mixture, cfg.preset)
        ref = derived_generator(cfg.seed, "eval-reference")
        n = max(opts.w1_samples, cfg.eval_samples)
        self.z = torch.randn(n, cfg.z_dim, generator=ref)
        self.real = self.mixture.sample(opts.w1_samples, generator=ref).numpy()
        self.real_other = self.mixture.sample(opts.decomposition_samples, generator=ref)
        self.records: list[dict] = []
        self.snapshots: list[np.ndarray] = []
        self.last_log: dict = {}
        self.train_seconds = 0.0
        self.seconds = 0.0

    def on_log(self, record: dict) -> None:
        self.last_log = record
        self.train_seconds = record["wall_time"]
        if self.run:
            self.run.log(record)

    def __call__(self, it: int, models) -> None:
        start = time.perf_counter()
        cfg, opts = self.cfg, self.opts
        gen = derived_generator(cfg.seed, f"eval-{it}")
        samples = self.method.generate(models, self.z[:cfg.eval_samples]).numpy()
        fake = self.method.generate(models, self.z[:opts.w1_samples]).numpy()
        record = {"iteration": it, "train_seconds": self.train_seconds if it else 0.0,
                  "w1": w1_exact(fake, self.real), "w1_recon": float("nan"),
                  "w1_latent": float("nan"),
                  **score_modes(samples, self.mixture.centres, self.mixture.std)}
        if self.method.HAS_ENCODER:
            d = opts.decomposition_samples
            recon = self.method.generate(models, self.method.encode(models, self.real_other))
            record["w1_recon"] = w1_exact(self.real[:d], recon.numpy())
            record["w1_latent"] = w1_exact(recon.numpy(), fake[:d])
        record.update(duality_gap(models, cfg, self.mixture.sample, gen, opts.gap_steps,
                                  opts.gap_samples))
        batch_gap = self.last_log.get("dual_gap") if self.last_log.get("iteration") == it \
            else None
        record["gap_cheap_batch"] = float("nan") if batch_gap is None else batch_gap
        self.snapshots.append(fake[:SNAPSHOT_POINTS].astype(np.float32))
        record["eval_seconds"] = time.perf_counter() - start
        self.seconds += record["eval_seconds"]
        self.records.append(record)
        if self.run:
            for name, keys in METRIC_FILES.items():
                line = {"iteration": it, "train_seconds": record["train_seconds"],
                        **{k: record[k] for k in keys}}
                with open(self.run.path / f"metric-{name}.jsonl", "a") as fh:
                    fh.write(json.dumps({k: None if isinstance(v, float) and math.isnan(v)
                                         else v for k, v in line.items()}) + "\n")


# ---------------------------------------------------------------------------------------
# From curves to numbers
# ---------------------------------------------------------------------------------------

def first_reached(curve: pd.DataFrame, mask) -> tuple[float, float]:
    """(iteration, training seconds) of the first evaluation where ``mask`` holds."""
    hit = curve[np.asarray(mask, dtype=bool)]
    if hit.empty:
        return float("nan"), float("nan")
    return float(hit.iloc[0]["iteration"]), float(hit.iloc[0]["train_seconds"])


def stopping_analysis(history: list[dict], curve: pd.DataFrame, cfg) -> dict:
    """Where Algorithm 1's stopping rule (iwgan.engine.trainer.stop_rule_met: windowed batch
    estimates of the gap and L against eps_1, eps_2) would have stopped this run, and the
    same rule on the eq. (4) estimate and the held-out L at the evaluations; with W1 at
    the first evaluation at or after that point against the run's final W1."""
    out = {"stop_it_batch": float("nan"), "stop_it_eq4": float("nan"),
           "stop_w1": float("nan"), "stop_w1_eq4": float("nan"),
           "min_window_gap": float("nan"), "min_window_L": float("nan")}
    if history and {"dual_gap", "objective_L"} <= set(history[0]):
        window = {k: deque(maxlen=cfg.stop_window) for k in ("dual_gap", "objective_L")}
        gaps, losses = [], []
        for rec in history:
            for k in window:
                window[k].append(rec[k])
            if len(window["dual_gap"]) == cfg.stop_window:
                gaps.append(abs(np.mean(window["dual_gap"])))
                losses.append(abs(np.mean(window["objective_L"])))
            if np.isnan(out["stop_it_batch"]) and stop_rule_met(window, cfg):
                out["stop_it_batch"] = rec["iteration"]
        if gaps:
            out["min_window_gap"], out["min_window_L"] = min(gaps), min(losses)
    eq4 = curve[(curve.iteration > 0) & (curve.dual_gap < cfg.stop_gap)
                & (curve.objective_heldout.abs() < cfg.stop_loss)]
    if len(eq4):
        out["stop_it_eq4"] = float(eq4.iloc[0].iteration)
    for key, it in (("stop_w1", out["stop_it_batch"]), ("stop_w1_eq4", out["stop_it_eq4"])):
        after = curve[curve.iteration >= it] if math.isfinite(it) else curve.iloc[:0]
        if len(after):
            out[key] = float(after.iloc[0].w1)
    return out


def summarise(curve: pd.DataFrame, history: list[dict], cfg, opts, n_modes: int,
              iterations: int) -> dict:
    floor = w1_floor(cfg.mixture, cfg.preset, opts.w1_samples)
    threshold = opts.w1_floor_factor * floor
    it_a, sec_a = first_reached(curve, (curve.modes == n_modes)
                                & (curve.hq_pct >= opts.hq_target))
    it_b, sec_b = first_reached(curve, curve.w1 <= threshold)
    row = {"w1_floor": floor, "w1_threshold": threshold,
           "it_all_modes_hq": it_a, "sec_all_modes_hq": sec_a,
           "it_w1_below": it_b, "sec_w1_below": sec_b,
           "curve_w1_final": float(curve.iloc[-1].w1),
           "curve_w1_recon_final": float(curve.iloc[-1].w1_recon),
           "curve_w1_latent_final": float(curve.iloc[-1].w1_latent),
           "curve_w1_min": float(curve.w1.min()),
           "dual_gap_final": float(curve.iloc[-1].dual_gap),
           "dual_gap_first": float(curve.iloc[0].dual_gap),
           "dual_gap_peak": float(curve.dual_gap.max()),
           "dual_gap_negative_frac": float((curve.dual_gap < 0).mean())}
    for est in GAP_ESTIMATES:
        row[f"spearman_{est}"] = spearman(curve[est], curve.w1)
    row.update(stopping_analysis(history, curve, cfg))
    # The plateau rule (iwgan.metrics.plateau) on this curve; NaN when too few of its
    # evaluations fall in the last quarter (e.g. 1,500 iterations evaluated every 250).
    row.update(plateau(curve, iterations, floor) if assessable(curve, iterations)
               else {"converged": np.nan})
    return row


# ---------------------------------------------------------------------------------------
# After training: latent space, quality score, interpolations
# ---------------------------------------------------------------------------------------

def final_analysis(models, cfg, opts) -> tuple[dict, dict]:
    """Scalars for the results row and arrays for the report; n/a (NaN) where the method
    has no encoder."""
    method = get_method(cfg.method)
    mixture = get_mixture(cfg.mixture, cfg.preset)
    gen = derived_generator(cfg.seed, "final-analysis")
    z1, z2 = (torch.randn(INTERPOLATION_PAIRS, cfg.z_dim, generator=gen) for _ in range(2))
    paths = quality.interpolations(models, cfg.method, z1, z2)
    row = {"interp_near_mode": quality.interpolation_near_mode_fraction(
        paths, mixture.centres, mixture.std)}
    arrays = {"interpolations": paths.astype(np.float32)}
    nan_keys = ("latent_mmd", "latent_mmd_p", "ks_rejected", "shapiro_rejected",
                "code_mean_abs", "code_std_min", "code_std_max", "auroc", "hdr_lo",
                "hdr_hi", "hdr_coverage", "quality_inlier", "quality_far")
    if not method.HAS_ENCODER:
        return {**row, **dict.fromkeys(nan_keys, float("nan"))}, arrays
    real = mixture.sample(500, generator=gen)
    codes = method.encode(models, real).numpy()
    prior = torch.randn(500, cfg.z_dim, generator=gen).numpy()
    row.update(quality.mmd_permutation_test(codes, prior, gen))
    tests = quality.normality_tests(codes)
    row.update({k: tests[k] for k in ("ks_rejected", "shapiro_rejected", "code_mean_abs",
                                      "code_std_min", "code_std_max")})
    row.update(quality.outlier_auroc(models, cfg.method, mixture, gen))
    errors = quality.reconstruction_errors(models, cfg.method,
                                           mixture.sample(cfg.eval_samples, generator=gen))
    lo, hi = quality.hdr_shortest_interval(errors, opts.alpha)
    fresh = quality.reconstruction_errors(models, cfg.method,
                                          mixture.sample(cfg.eval_samples, generator=gen))
    row.update(hdr_lo=lo, hdr_hi=hi, hdr_coverage=float(((fresh >= lo) & (fresh <= hi)).mean()))
    xs, ys, scores = quality.quality_map(models, cfg.method, mixture.centres, mixture.std)
    xx, yy = np.meshgrid(xs, ys)
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
    far = ~quality.near_mode_mask(grid, mixture.centres, mixture.std, n_std=10.0)
    row.update(quality_inlier=float(np.exp(-errors).mean()),
               quality_far=float(scores.ravel()[far].mean()) if far.any() else float("nan"))
    arrays.update(codes=codes.astype(np.float32), map_x=xs, map_y=ys,
                  map_score=scores.astype(np.float32), errors=errors.astype(np.float32))
    return row, arrays


# ---------------------------------------------------------------------------------------
# One run, and the grid
# ---------------------------------------------------------------------------------------

class ConvergenceRun:
    """One run's record: its run directory, manifest, results row and evaluator; written
    before training, finished with the trained member by :meth:`finish`."""

    def __init__(self, cfg, opts: ConvergenceOptions, out: Path, stacked: list[str]):
        self.cfg, self.opts, self.out = cfg, opts, Path(out)
        self.run = RunDir(self.out / "runs" / "convergence", cfg)
        for old in self.run.path.glob("metric-*.jsonl"):
            old.unlink()
        self.record = manifest(cfg, stacked=stacked)
        self.run.write("config.json", cfg.to_dict())
        self.run.write("convergence_options.json", asdict(opts))
        self.run.write("manifest.json", self.record)
        self.row = {**base_row(cfg, self.record, len(stacked)),
                    **{f"opt_{k}": v for k, v in asdict(opts).items()},
                    "options_hash": opts.hash(),
                    "gap_kind": "eq4" if get_method(cfg.method).HAS_ENCODER else "wgan"}
        self.evaluator = Evaluator(cfg, opts, self.run)
        # Before the clock starts: the floor is cached per process and importing POT (~3 s)
        # would otherwise be charged to the first evaluation.
        w1_floor(cfg.mixture, cfg.preset, opts.w1_samples)

    def finish(self, result):
        """The results row and the curves of the trained member ``result``
        (iwgan.engine.trainer.MemberResult)."""
        cfg, opts, row, ev = self.cfg, self.opts, self.row, self.evaluator
        if result.status == "diverged":
            row.update(status="diverged", diverged_at=result.diverged_at,
                       iterations_run=result.diverged_at, train_seconds=result.wall_time,
                       eval_seconds=ev.seconds, finished=now())
            self.run.write("metrics.json", {**row, "error": "non-finite loss at iteration "
                                                            f"{result.diverged_at}"})
            return row, curve_frame(ev.records, row, CURVE_METRICS)
        models, wall_time = result.models, result.wall_time
        curve = pd.DataFrame(ev.records)
        n_modes = get_mixture(cfg.mixture, cfg.preset).n_modes
        row.update(status=result.status, diverged_at=np.nan,
                   iterations_run=result.iterations, train_seconds=wall_time,
                   eval_seconds=ev.seconds, evaluations=len(curve),
                   eval_overhead_pct=100 * ev.seconds / max(wall_time, 1e-9))
        row.update(summarise(curve, result.history, cfg, opts, n_modes, result.iterations))
        final_start = time.perf_counter()
        metrics, _ = evaluate(cfg, models)
        row.update({f"final_{k}": v for k, v in metrics.items()})
        row["final_eval_seconds"] = time.perf_counter() - final_start
        analysis_start = time.perf_counter()
        scalars, arrays = final_analysis(models, cfg, opts)
        row.update(scalars)
        row["analysis_seconds"] = time.perf_counter() - analysis_start
        save_npz(self.out / "results" / "convergence_artifacts" / f"{cfg.run_id}.npz",
                 {"iterations": curve.iteration.to_numpy(),
                  "snapshots": np.stack(ev.snapshots), **arrays})
        save_torch(self.run.path / "checkpoint.pt", result.checkpoint())
        row["finished"] = now()
        self.run.write("metrics.json", row)
        self.run.write("manifest.json", {**self.record, "finished": row["finished"]})
        return row, curve_frame(ev.records, row, CURVE_METRICS)


def run_convergence(unit, opts: ConvergenceOptions, out: Path, progress=None):
    """Train a unit's configs (one run, or a stack: iwgan.engine.stacking) with every
    member evaluated every ``opts.eval_every`` iterations; writes each member's run
    directory under ``out/runs/convergence`` and its arrays under
    ``out/results/convergence_artifacts``; returns [(summary row, curve DataFrame), ...],
    times being each member's share of the unit's."""
    unit = list(unit)
    configure_torch(unit[0])  # before the manifests, so they record the run's threads
    recs = [ConvergenceRun(c, opts, out, [m.run_id for m in unit]) for c in unit]
    hooks = [LogTo([r.evaluator.on_log for r in recs]),
             Evaluate(lambda k, it, models: recs[k].evaluator(it, models), opts.eval_every)]
    results = train(unit, hooks=hooks + ([Progress(progress)] if progress else []))
    return [rec.finish(result) for rec, result in zip(recs, results)]


def failed_unit(unit, error: str, opts: ConvergenceOptions) -> list:
    """The rows of a unit whose worker failed twice: recorded, never lost."""
    out = []
    for cfg in unit:
        row = {**base_row(cfg, manifest(cfg, stacked=[c.run_id for c in unit]), len(unit)),
               **{f"opt_{k}": v for k, v in asdict(opts).items()},
               "options_hash": opts.hash(), "status": "failed", "error": error,
               "iterations_run": 0, "finished": now()}
        out.append((row, curve_frame([], row, CURVE_METRICS)))
    return out


def run_convergence_grid(configs, opts: ConvergenceOptions, out: Path, jobs: int = 1,
                         resume: bool = False, stack: str = "auto",
                         max_stack: int | None = None, executor=None) -> list[dict]:
    """Every config, stacked as ``stack`` (auto | on | off:
    iwgan.engine.stacking.plan_stacks) says, run by ``executor`` (default: ``jobs`` local
    processes); each finished unit is written to ``results/convergence.csv`` and
    ``results/convergence_curves.csv`` at once."""
    results = Path(out) / "results"
    csv, curves_csv = results / "convergence.csv", results / "convergence_curves.csv"
    if csv.exists():
        read_results(csv, damaged="warn")  # refuse a file of another schema
    if resume:
        # A changed --eval-every or --w1-samples changes the curves: such runs re-run.
        configs = unfinished(configs, csv, also={"options_hash": opts.hash()})
    units = plan_stacks(configs, stack, max_stack)

    def record(results):
        upsert_results(csv, [row for row, _ in results])
        upsert_curves(curves_csv, [curve for _, curve in results])
        for row, _ in results:
            if row["status"] == "diverged":
                tqdm.write(f"{row['run_id']}: diverged at iteration {row['diverged_at']}")

    runner = functools.partial(run_convergence, opts=opts, out=out)
    executor = executor or LocalExecutor(ExecutorOptions(jobs=jobs))
    done = executor.run(units, runner, record,
                        functools.partial(failed_unit, opts=opts))
    return [row for results in done for row, _ in results]


def record_thresholds(path: Path, configs, opts) -> None:
    """The W1 floor and threshold of every mixture in the grid, for the report, merged
    into the file's earlier entries by mixture, preset and sample count."""
    entries = {}
    for mixture, preset in sorted({(c.mixture, c.preset) for c in configs}):
        floor = w1_floor(mixture, preset, opts.w1_samples)
        entries[f"{mixture}-{preset}-n{opts.w1_samples}"] = {
            "mixture": mixture, "preset": preset, "samples": opts.w1_samples,
            "floor": floor, "factor": opts.w1_floor_factor,
            "threshold": opts.w1_floor_factor * floor}
    update_json(path, lambda record: record.update(entries))


# ---------------------------------------------------------------------------------------
# The command: python -m iwgan convergence
# ---------------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
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


def command(args) -> int:
    opts = ConvergenceOptions(eval_every=args.eval_every, gap_steps=args.gap_steps,
                              w1_samples=args.w1_samples, alpha=args.alpha)
    # Every iteration logged: Algorithm 1's stopping rule is replayed on the full history.
    configs = [dataclasses.replace(c, log_every=1) for c in grid_configs(args)]
    if configs[0].profile == "converged":
        check_window(configs[0].iterations, opts.eval_every)
    check_run_dirs(args.out / "runs" / "convergence", configs)
    results = args.out / "results"
    with open_executor(executor_options(args)) as executor:   # reachable, before writing
        record_thresholds(results / "convergence_thresholds.json", configs, opts)
        start = time.perf_counter()
        rows = run_convergence_grid(configs, opts, args.out, resume=args.resume,
                                    stack=args.stack, max_stack=args.max_stack,
                                    executor=executor)
    return finish_grid(args, "convergence", configs, rows, time.perf_counter() - start)
