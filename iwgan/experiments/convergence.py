"""Convergence, measured: the duality gap of eq. (4) against the exact W1 over training.

Every ``eval_every`` (M) iterations of a run, on held-out draws only:

    dual_gap     eq. (4) estimated on copies of the networks (iwgan.core.duality_gap:
                 ``gap_steps`` Adam steps of a sup copy of f and of an inf copy of
                 (G, Q), both values on a held-out set); wgan_gp gets the analogous WGAN
                 gap; ALI, BiGAN and alpha-GAN use their logit discriminator as f, and the
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

from iwgan.core.duality_gap import duality_gap, gap_value, stop_rule_met
from iwgan.core.methods import get_method
from iwgan.data.mixtures import get_mixture
from iwgan.engine.executors import executor_options, open_executor
from iwgan.engine.seeds import derived_generator
from iwgan.experiments.common import (
    MixtureExperiment,
    add_continuation_argument,
    add_grid_arguments,
    grid_configs,
    positive_int,
)
from iwgan.experiments.mode_coverage import MixtureCurve, continue_members, evaluate
from iwgan.experiments.skeleton import finish, jsonable, run_experiment
from iwgan.files import append_jsonl, save_npz, update_json, write_json
from iwgan.metrics import quality
from iwgan.metrics.mixture import score_modes, w1_exact, w1_floor
from iwgan.metrics.plateau import check_window
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
    # eq. (4) once more on the final models with each of these inner-step counts, on one
    # held-out set and one stream of batches (its sensitivity to the steps; empty: not run)
    final_gap_steps: tuple[int, ...] = ()

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
        if any(not isinstance(n, int) or n <= 0 for n in self.final_gap_steps):
            raise ValueError(f"final_gap_steps must be positive integers, got "
                             f"{self.final_gap_steps!r}")

    def recorded(self) -> dict:
        """The options a row records and hashes; without final gaps, the options as they
        were before final gaps existed, so that the runs recorded then still resume."""
        return {k: (",".join(map(str, v)) if k == "final_gap_steps" else v)
                for k, v in asdict(self).items() if k != "final_gap_steps" or v}

    def hash(self) -> str:
        blob = json.dumps(self.recorded(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# ---------------------------------------------------------------------------------------
# Evaluation every M iterations
# ---------------------------------------------------------------------------------------

class Evaluator(MixtureCurve):
    """The convergence curve: every ``eval_every`` iterations W1 and Theorem 2.2's terms,
    mode coverage and the duality gap, each evaluation also appended to the run's
    metric-*.jsonl files (when it has a run directory); keeps the samples of every
    evaluation for the figures."""

    def __init__(self, cfg, opts: ConvergenceOptions, run=None):
        super().__init__(cfg, opts.eval_every)
        self.opts, self.run, self.w1_samples = opts, run, opts.w1_samples
        self.method = get_method(cfg.method)
        self.mixture = get_mixture(cfg.mixture, cfg.preset)
        ref = derived_generator(cfg.seed, "eval-reference")
        n = max(opts.w1_samples, cfg.eval_samples)
        self.z = torch.randn(n, cfg.z_dim, generator=ref)
        self.real = self.mixture.sample(opts.w1_samples, generator=ref).numpy()
        self.real_other = self.mixture.sample(opts.decomposition_samples, generator=ref)
        self.snapshots: list[np.ndarray] = []
        # Before the clock starts: the floor is cached per process and importing POT
        # (~3 s) would otherwise be charged to the first evaluation.
        w1_floor(cfg.mixture, cfg.preset, opts.w1_samples)
        if run is not None:
            for old in run.path.glob("metric-*.jsonl"):
                old.unlink()

    def measure(self, it: int, models) -> dict:
        cfg, opts = self.cfg, self.opts
        gen = derived_generator(cfg.seed, f"eval-{it}")
        samples = self.method.generate(models, self.z[:cfg.eval_samples]).numpy()
        fake = self.method.generate(models, self.z[:opts.w1_samples]).numpy()
        record = {"w1": w1_exact(fake, self.real), "w1_recon": float("nan"),
                  "w1_latent": float("nan"),
                  **score_modes(samples, self.mixture.centres, self.mixture.std)}
        if self.method.has_encoder:
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
        return record

    def __call__(self, it: int, models) -> dict:
        record = super().__call__(it, models)
        if self.run is not None:
            for name, keys in METRIC_FILES.items():
                append_jsonl(self.run.path / f"metric-{name}.jsonl", jsonable(
                    {"iteration": it, "train_seconds": record["train_seconds"],
                     **{k: record[k] for k in keys}}))
        return record


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


def summarise(curve: pd.DataFrame, history: list[dict], cfg, opts, n_modes: int) -> dict:
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
    return row


# ---------------------------------------------------------------------------------------
# After training: latent space, quality score, interpolations
# ---------------------------------------------------------------------------------------

def final_gaps(models, cfg, opts) -> dict:
    """eq. (4) on the final models with each of ``opts.final_gap_steps`` inner Adam steps
    (``final_gap_<steps>``), every estimate on the same held-out set and the same stream
    of batches: how far the curve's ``gap_steps``-step estimate is from the sup and inf it
    stands for."""
    mixture = get_mixture(cfg.mixture, cfg.preset)
    return {f"final_gap_{n}": duality_gap(models, cfg, mixture.sample,
                                          derived_generator(cfg.seed, "final-gap"), n,
                                          opts.gap_samples)["dual_gap"]
            for n in opts.final_gap_steps}


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
    if not method.has_encoder:
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

class Convergence(MixtureExperiment):
    """Every run evaluated every ``opts.eval_every`` iterations (:class:`Evaluator`), then
    summarised, evaluated by the mode-coverage protocol and analysed (latent space,
    quality score, interpolations); its arrays go to
    ``results/convergence_artifacts/<run>.npz``."""

    name = "convergence"
    curve_metrics = CURVE_METRICS
    runs = "runs/convergence"

    def __init__(self, out: Path = Path("."), opts: ConvergenceOptions | None = None,
                 continuation: bool = False):
        super().__init__(out, continuation)
        self.opts = opts or ConvergenceOptions()

    def finished_with(self) -> dict:
        # A changed --eval-every or --w1-samples changes the curves: such runs re-run.
        return {**super().finished_with(), "options_hash": self.opts.hash()}

    def begin(self, configs) -> None:
        record_thresholds(self.out / "results" / "convergence_thresholds.json", configs,
                          self.opts)

    def prepare(self, configs, resume) -> None:
        for method in sorted({c.method for c in configs}):
            gap_value(get_method(method))   # one line on a method without a duality gap

    def columns(self, cfg) -> dict:
        return {**super().columns(cfg), **{f"opt_{k}": v for k, v in self.opts.recorded().items()},
                "options_hash": self.opts.hash(),
                "gap_kind": gap_value(get_method(cfg.method)).kind}

    def curve(self, cfg, run):
        write_json(run.path / "convergence_options.json", asdict(self.opts))
        return Evaluator(cfg, self.opts, run)

    def measure(self, cfg, result, curve, run) -> dict:
        frame = pd.DataFrame(curve.records)
        n_modes = get_mixture(cfg.mixture, cfg.preset).n_modes
        row = {"eval_seconds": curve.seconds, "evaluations": len(frame),
               "eval_overhead_pct": 100 * curve.seconds / max(result.wall_time, 1e-9),
               **summarise(frame, result.history, cfg, self.opts, n_modes),
               # the plateau rule on this curve; NaN when too few of its evaluations fall
               # in the last quarter (e.g. 1,500 iterations evaluated every 250)
               **curve.verdict(result.iterations)}
        start = time.perf_counter()
        metrics, _ = evaluate(cfg, result.models)
        row.update({f"final_{k}": v for k, v in metrics.items()})
        row.update(curve.flags(metrics))
        row.update(final_gaps(result.models, cfg, self.opts))
        row["final_eval_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        scalars, arrays = final_analysis(result.models, cfg, self.opts)
        row.update(scalars)
        row["analysis_seconds"] = time.perf_counter() - start
        save_npz(self.out / "results" / "convergence_artifacts" / f"{cfg.run_id}.npz",
                 {"iterations": frame.iteration.to_numpy(),
                  "snapshots": np.stack(curve.snapshots), **arrays})
        self.keep(run, result)
        return row

    def continue_unit(self, unit, curves, results, measured, progress=None) -> list[dict]:
        return continue_members(self, unit, curves, measured, "final_", progress)

    def unmeasured(self, cfg, curve) -> dict:
        return {"eval_seconds": curve.seconds if curve else 0.0, "converged": False}


def run_convergence_grid(configs, opts: ConvergenceOptions, out: Path, jobs: int = 1,
                         resume: bool = False, stack: str = "auto",
                         max_stack: int | None = None, executor=None,
                         continuation: bool = False) -> list[dict]:
    """The convergence grid into ``out`` (iwgan.experiments.skeleton.run_experiment)."""
    return run_experiment(Convergence(out, opts, continuation), configs, executor, jobs,
                          resume, stack, max_stack)


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
    add_continuation_argument(p)
    p.set_defaults(presets=["paper"], seeds=5)
    for action in p._actions:  # the grid's help states its own defaults
        if action.dest in ("presets", "seeds"):
            action.help = action.help.split(" (default")[0] + f" (default {action.default})"
    p.add_argument("--eval-every", type=positive_int, default=250,
                   help="M: iterations between evaluations (default 250)")
    p.add_argument("--gap-steps", type=positive_int, default=15,
                   help="Adam steps of the sup and of the inf copy in eq. (4) (default 15)")
    p.add_argument("--final-gap-steps", type=positive_int, nargs="+", default=(),
                   metavar="STEPS", help="also estimate eq. (4) on the final models with "
                   "each of these inner-step counts (e.g. 15 100 500), recorded as "
                   "final_gap_<steps>: the estimate's sensitivity to its steps")
    p.add_argument("--w1-samples", type=positive_int, default=1000,
                   help="points per side of the W1 curves (default 1000)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="HDR coverage is 1 - alpha, alpha in (0, 1) (default 0.05)")


def command(args) -> int:
    opts = ConvergenceOptions(eval_every=args.eval_every, gap_steps=args.gap_steps,
                              w1_samples=args.w1_samples, alpha=args.alpha,
                              final_gap_steps=tuple(args.final_gap_steps))
    # Every iteration logged: Algorithm 1's stopping rule is replayed on the full history.
    configs = [dataclasses.replace(c, log_every=1) for c in grid_configs(args)]
    if configs[0].profile == "converged":
        check_window(configs[0].iterations, opts.eval_every)
    experiment = Convergence(args.out, opts, continuation=args.continue_check)
    experiment.prepare(configs, args.resume)
    with open_executor(executor_options(args)) as executor:   # reachable, before writing
        start = time.perf_counter()
        rows = run_experiment(experiment, configs, executor, resume=args.resume,
                              stack=args.stack, max_stack=args.max_stack)
    return finish(args, experiment, configs, rows, time.perf_counter() - start)
