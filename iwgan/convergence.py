"""Convergence, measured: the duality gap of eq. (4) against the exact W1 over training.

Every ``eval_every`` (M) iterations of a run, on held-out draws only:

    dual_gap     eq. (4) estimated as Grnarova et al. (2018) do. With
                 L(G, Q, f) = E||x - G(Q(x))|| + E f(G(Q(x))) - E f(G(z)):
                     sup step: ``gap_steps`` Adam steps on a deep copy of f maximising
                               L(G~, Q~, f) - lambda_gp * GP(f), the penalty on points
                               between G~(Q~(x)) and G~(z), the two sets f separates in L;
                     inf step: ``gap_steps`` Adam steps on deep copies of (G, Q)
                               minimising L(G, Q, f~);
                     dual_gap = L(G~, Q~, f_sup) - L(G_inf, Q_inf, f~),
                 both values on a held-out evaluation set the steps never saw.
                 Methods without an encoder (wgan_gp) get the analogous WGAN gap with
                 V(G, f) = E f(x) - E f(G(z)): sup_f V(G~, f) - inf_G V(G, f~), the sup
                 penalised on points between x and G~(z) as in WGAN-GP's training. ALI and
                 alpha-GAN have a logit discriminator, not a 1-Lipschitz critic, as their
                 f~: their eq. (4) values use it as it is and the report says so.
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
from torch's global generator and only ever optimises copies, so a run with evaluation
ends with the same weights as a run without (a test checks ``torch.equal``).

The run directory is the record (``runs/convergence/<run>/``): ``config.json``,
``manifest.json``, ``log.jsonl`` (every iteration), ``metric-<name>.jsonl`` (one line per
evaluation), ``metrics.json`` and ``checkpoint.pt``; ``results/`` gets one summary row per
run (``convergence.csv``), the long-format curves (``convergence_curves.csv``) and the
arrays the report plots (``convergence_artifacts/<run>.npz``).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from iwgan import quality
from iwgan.methods import adam, get_method, update
from iwgan.metrics import score_modes, w1_exact
from iwgan.mixtures import get_mixture
from iwgan.records import (
    RunDir,
    atomic_write_text,
    manifest,
    now,
    read_results,
    save_torch,
    upsert_results,
    write_json,
)
from iwgan.runs import evaluate, manifest_columns
from iwgan.training import Diverged, configure_torch, derived_generator, stop_rule_met, train

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


# ---------------------------------------------------------------------------------------
# The duality gap of eq. (4)
# ---------------------------------------------------------------------------------------

def gradient_penalty_with(critic, a: torch.Tensor, b: torch.Tensor,
                          generator: torch.Generator) -> torch.Tensor:
    """iwgan.losses.gradient_penalty with the interpolation weights drawn from
    ``generator``, so that evaluating never advances the global (training) stream."""
    eps = torch.rand(a.shape[0], *([1] * (a.dim() - 1)), generator=generator)
    x_hat = (eps * a.detach() + (1 - eps) * b.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def objective_L(generator, encoder, critic, x, z) -> torch.Tensor:
    """L(G, Q, f) = E||x - G(Q(x))|| + E f(G(Q(x))) - E f(G(z)), eq. (4)."""
    recon = generator(encoder(x))
    return ((x - recon).flatten(1).norm(dim=1).mean() + critic(recon).mean()
            - critic(generator(z)).mean())


def wgan_value(generator, critic, x, z) -> torch.Tensor:
    """V(G, f) = E f(x) - E f(G(z)), the WGAN objective (2)."""
    return critic(x).mean() - critic(generator(z)).mean()


def frozen(module):
    twin = copy.deepcopy(module)
    twin.requires_grad_(False)
    return twin


def trainable(module):
    twin = copy.deepcopy(module)
    twin.requires_grad_(True)
    return twin


def duality_gap(models, cfg, sample_real, generator: torch.Generator, steps: int,
                n_eval: int = 1_000) -> dict:
    """The duality gap of ``models`` at their current parameters (see the module's
    docstring): eq. (4) for methods with an encoder, the WGAN gap otherwise. Draws the
    held-out set, then ``steps`` batches for the sup copy, then ``steps`` for the inf copy,
    all from ``generator``; ``sample_real(n, generator)`` draws real points."""
    if steps <= 0:
        raise ValueError(f"gap_steps must be a positive integer, got {steps}")
    has_encoder = get_method(cfg.method).HAS_ENCODER
    G, f = frozen(models.generator), frozen(models.critic)
    Q = frozen(models.encoder) if has_encoder else None
    x_eval = sample_real(n_eval, generator)
    z_eval = torch.randn(n_eval, cfg.z_dim, generator=generator)

    def batch():
        return (sample_real(cfg.batch_size, generator),
                torch.randn(cfg.batch_size, cfg.z_dim, generator=generator))

    def value(g, q, critic, x, z):
        return objective_L(g, q, critic, x, z) if has_encoder else wgan_value(g, critic, x, z)

    # sup over f, (G, Q) fixed
    f_sup = trainable(models.critic)
    opt = adam([f_sup], cfg)
    for _ in range(steps):
        x, z = batch()
        with torch.no_grad():
            first = G(Q(x)) if has_encoder else x
            fake = G(z)
        gp = gradient_penalty_with(f_sup, first, fake, generator)
        loss = -(f_sup(first).mean() - f_sup(fake).mean()) + cfg.lambda_gp * gp
        update(opt, loss)
    # inf over (G, Q), f fixed
    G_inf = trainable(models.generator)
    Q_inf = trainable(models.encoder) if has_encoder else None
    opt = adam([G_inf, Q_inf] if has_encoder else [G_inf], cfg)
    for _ in range(steps):
        x, z = batch()
        update(opt, value(G_inf, Q_inf, f, x, z))
    with torch.no_grad():
        sup = float(value(G, Q, f_sup, x_eval, z_eval))
        inf = float(value(G_inf, Q_inf, f, x_eval, z_eval))
        current = float(value(G, Q, f, x_eval, z_eval))
        out = {"dual_gap": sup - inf, "dual_gap_sup": sup, "dual_gap_inf": inf,
               "objective_heldout": current, "gap_cheap_heldout": float("nan"),
               "recon_error": float("nan")}
        if has_encoder:
            recon = (x_eval - G(Q(x_eval))).flatten(1).norm(dim=1).mean()
            out["recon_error"] = float(recon)
            out["gap_cheap_heldout"] = float(recon - wgan_value(G, f, x_eval, z_eval))
    return out


# ---------------------------------------------------------------------------------------
# Evaluation every M iterations
# ---------------------------------------------------------------------------------------

@functools.cache
def w1_floor(mixture: str, preset: str, n: int, repeats: int = 5) -> float:
    """Mean exact W1 between two independent real samples of n points: the value a
    perfect generator scores, i.e. the noise floor of the W1 curve at that sample size."""
    mix = get_mixture(mixture, preset)
    gen = derived_generator(0, f"w1-floor-{mixture}-{preset}-{n}")
    return float(np.mean([w1_exact(mix.sample(n, gen).numpy(), mix.sample(n, gen).numpy())
                          for _ in range(repeats)]))


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


def spearman(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(stats.spearmanr(a[ok], b[ok]).statistic)


def stopping_analysis(history: list[dict], curve: pd.DataFrame, cfg) -> dict:
    """Where Algorithm 1's stopping rule (iwgan.training.stop_rule_met: windowed batch
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
    before training, finished with the trained models by :meth:`finish`."""

    def __init__(self, cfg, opts: ConvergenceOptions, out: Path, batch_seeds: int = 1):
        self.cfg, self.opts, self.out = cfg, opts, Path(out)
        self.run = RunDir(self.out / "runs" / "convergence", cfg)
        for old in self.run.path.glob("metric-*.jsonl"):
            old.unlink()
        configure_torch(cfg)  # before the manifest, so it records the run's thread count
        self.record = manifest(cfg)
        self.run.write("config.json", cfg.to_dict())
        self.run.write("convergence_options.json", asdict(opts))
        self.run.write("manifest.json", self.record)
        self.row = {"run_id": cfg.run_id, "method": cfg.method, "mixture": cfg.mixture,
                    "preset": cfg.preset, "seed": cfg.seed, "profile": cfg.profile,
                    "iterations": cfg.iterations, "width": cfg.width,
                    "batch_size": cfg.batch_size, "config_hash": cfg.hash(),
                    **{f"opt_{k}": v for k, v in asdict(opts).items()},
                    "gap_kind": "eq4" if get_method(cfg.method).HAS_ENCODER else "wgan",
                    **manifest_columns(self.record), "batch_seeds": batch_seeds}
        self.evaluator = Evaluator(cfg, opts, self.run)
        # Before the clock starts: the floor is cached per process and importing POT (~3 s)
        # would otherwise be charged to the first evaluation.
        w1_floor(cfg.mixture, cfg.preset, opts.w1_samples)

    def diverged(self, iteration: int, train_seconds: float, error: str):
        row, ev = self.row, self.evaluator
        row.update(status="diverged", diverged_at=iteration, iterations_run=iteration,
                   train_seconds=train_seconds, eval_seconds=ev.seconds, finished=now())
        self.run.write("metrics.json", {**row, "error": error})
        return row, curve_frame(ev.records, row)

    def finish(self, models, iterations: int, wall_time: float, history: list,
               stopped_early: bool = False):
        cfg, opts, row, ev = self.cfg, self.opts, self.row, self.evaluator
        curve = pd.DataFrame(ev.records)
        n_modes = get_mixture(cfg.mixture, cfg.preset).n_modes
        row.update(status="stopped_early" if stopped_early else "finished",
                   diverged_at=np.nan, iterations_run=iterations,
                   train_seconds=wall_time, eval_seconds=ev.seconds,
                   evaluations=len(curve),
                   eval_overhead_pct=100 * ev.seconds / max(wall_time, 1e-9))
        row.update(summarise(curve, history, cfg, opts, n_modes))
        final_start = time.perf_counter()
        metrics, _ = evaluate(cfg, models)
        row.update({f"final_{k}": v for k, v in metrics.items()})
        row["final_eval_seconds"] = time.perf_counter() - final_start
        analysis_start = time.perf_counter()
        scalars, arrays = final_analysis(models, cfg, opts)
        row.update(scalars)
        row["analysis_seconds"] = time.perf_counter() - analysis_start
        save_artifacts(self.out / "results" / "convergence_artifacts" / f"{cfg.run_id}.npz",
                       iterations=curve.iteration.to_numpy(),
                       snapshots=np.stack(ev.snapshots), **arrays)
        save_torch(self.run.path / "checkpoint.pt", {"config": cfg.to_dict(),
                                                     **models.state_dict()})
        row["finished"] = now()
        self.run.write("metrics.json", row)
        self.run.write("manifest.json", {**self.record, "finished": row["finished"]})
        return row, curve_frame(ev.records, row)


def run_convergence(cfg, opts: ConvergenceOptions, out: Path, progress=None):
    """Train ``cfg`` with evaluation every ``opts.eval_every`` iterations; writes the run
    directory under ``out/runs/convergence`` and the arrays under
    ``out/results/convergence_artifacts``; returns (summary row, curve DataFrame)."""
    rec = ConvergenceRun(cfg, opts, out)
    ev = rec.evaluator
    start = time.perf_counter()
    try:
        result = train(cfg, on_log=ev.on_log, progress=progress, on_eval=ev,
                       eval_every=opts.eval_every)
    except Diverged as err:
        return rec.diverged(err.iteration, time.perf_counter() - start - ev.seconds,
                            str(err))
    return rec.finish(result.models, result.iterations, result.wall_time, result.history,
                      result.stopped_early)


def run_convergence_group(group, opts: ConvergenceOptions, out: Path, progress=None):
    """A seed group (iwgan.batched.plan_groups): its seeds trained as one batched model,
    each member evaluated every M iterations and recorded exactly as
    :func:`run_convergence` records a sequential run, times being its share (/ K);
    a group of one config is :func:`run_convergence`. Returns [(row, curve), ...]."""
    from iwgan.batched import train_batched

    if not group.batched:
        return [run_convergence(group.configs[0], opts, out, progress=progress)]
    cfgs = list(group.configs)
    recs = [ConvergenceRun(c, opts, out, batch_seeds=len(cfgs)) for c in cfgs]
    result = train_batched(cfgs[0], [c.seed for c in cfgs],
                           on_log=lambda k, r: recs[k].evaluator.on_log(r),
                           progress=progress,
                           on_eval=lambda k, it, models: recs[k].evaluator(it, models),
                           eval_every=opts.eval_every)
    out_rows = []
    for k, rec in enumerate(recs):
        at = result.diverged_at[k]
        if at is not None:
            share = rec.evaluator.train_seconds
            out_rows.append(rec.diverged(at, share, f"non-finite loss at iteration {at}"))
        else:
            out_rows.append(rec.finish(result.members[k], result.iterations,
                                       result.wall_time, result.histories[k]))
    return out_rows


def save_artifacts(path: Path, **arrays) -> None:
    import io

    from iwgan.records import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


KEYS = ("run_id", "method", "mixture", "preset", "seed", "profile")


def curve_frame(records: list[dict], row: dict) -> pd.DataFrame:
    """Long format: one line per (run, evaluation, metric)."""
    if not records:
        return pd.DataFrame(columns=[*KEYS, "iteration", "train_seconds", "metric", "value"])
    wide = pd.DataFrame(records)
    long = wide.melt(id_vars=["iteration", "train_seconds"],
                     value_vars=[c for c in CURVE_METRICS if c in wide], var_name="metric")
    for k in reversed(KEYS):
        long.insert(0, k, row[k])
    return long


def upsert_curves(path: Path, curves: list[pd.DataFrame]) -> None:
    new = pd.concat(curves, ignore_index=True)
    path = Path(path)
    if path.exists():
        old = pd.read_csv(path)
        new = pd.concat([old[~old.run_id.isin(set(new.run_id))], new], ignore_index=True)
    new = new.sort_values(["profile", "preset", "mixture", "method", "seed", "metric",
                           "iteration"], kind="stable")
    atomic_write_text(path, new.to_csv(index=False))


def run_convergence_grid(configs, opts: ConvergenceOptions, out: Path, jobs: int = 1,
                         resume: bool = False, batch_seeds: str = "auto") -> list[dict]:
    """Every config, in ``jobs`` processes, a cell's seeds batched as ``batch_seeds``
    (auto | on | off: iwgan.batched.plan_groups) says; each finished run (or batch) is
    written to ``results/convergence.csv`` and ``results/convergence_curves.csv`` at once."""
    import functools

    from tqdm import tqdm

    from iwgan.batched import plan_groups
    from iwgan.grid import run_grid, unfinished

    results = Path(out) / "results"
    csv, curves_csv = results / "convergence.csv", results / "convergence_curves.csv"
    if csv.exists():
        read_results(csv)  # refuse to append to a file of another schema
    if resume:
        configs = unfinished(configs, csv)
    groups = plan_groups(configs, batch_seeds)

    def record(results):
        upsert_results(csv, [row for row, _ in results])
        upsert_curves(curves_csv, [curve for _, curve in results])
        for row, _ in results:
            if row["status"] == "diverged":
                tqdm.write(f"{row['run_id']}: diverged at iteration {row['diverged_at']}")

    runner = functools.partial(run_convergence_group, opts=opts, out=out)
    return [row for results in run_grid(groups, runner, record, jobs) for row, _ in results]


def record_thresholds(path: Path, configs, opts) -> None:
    """The W1 floor and threshold of every mixture in the grid, for the report."""
    record = {}
    for mixture, preset in sorted({(c.mixture, c.preset) for c in configs}):
        floor = w1_floor(mixture, preset, opts.w1_samples)
        record[f"{mixture}-{preset}"] = {"samples": opts.w1_samples, "floor": floor,
                                        "factor": opts.w1_floor_factor,
                                        "threshold": opts.w1_floor_factor * floor}
    write_json(path, record)
