"""The mode-coverage experiment: every method x mixture x preset x seed trained, scored
under the 3-std protocol (iwgan.metrics.mixture) and recorded, with the curve that says
whether it converged (iwgan.metrics.plateau).

``python -m iwgan mode-coverage`` (``nox -s mode_coverage``), on the experiment skeleton
(iwgan.experiments.skeleton). A unit of the grid is one stack of runs
(iwgan.engine.stacking; one run where stacking does not pay); each member gets the record
of a single run: ``runs/<run>/`` (config.json and manifest.json before
training, log.jsonl, metrics.json, samples.npy, checkpoint.pt) and one row of
``results/mode_coverage.csv``, written as soon as its unit finishes, with its evaluation
samples copied to ``results/mode_coverage_samples/<run>.npy`` at the same moment.

Every run is evaluated ``curve_points`` times (16 by default) on the way
(``iwgan.metrics.plateau.curve_every``; :class:`CoverageCurve`):
modes, HQ % and KL on ``eval_samples`` draws and the exact W1 on ``CURVE_W1_SAMPLES``
against a fixed real set, all from generators of the run's own (common random numbers
along the curve; training's stream is not touched). The curves go to
``results/mode_coverage_curves.csv``; the plateau rule on them gives the row's
``converged``. The row records the curve's settings (``curve_points``,
``curve_w1_samples``), which the reports read.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from iwgan.core.methods import get_method
from iwgan.data.mixtures import MIXTURES, PRESETS, get_mixture
from iwgan.engine.config import PROTOCOLS
from iwgan.engine.executors import executor_options, open_executor
from iwgan.engine.records import REPO_ROOT, curve_frame, read_results, upsert_curves
from iwgan.engine.seeds import derived_generator
from iwgan.experiments.common import (
    MixtureExperiment,
    add_continuation_argument,
    add_grid_arguments,
    grid_configs,
)
from iwgan.experiments.protocols import SEARCHED, tuned_configs
from iwgan.experiments.skeleton import Curve, finish, run_experiment
from iwgan.files import save_npy, write_json
from iwgan.metrics import continuation
from iwgan.metrics.mixture import (
    EvalData,
    compute_metrics,
    score_modes,
    w1_exact,
    w1_floor,
    w1_unavailable,
)
from iwgan.metrics.plateau import HQ_ABS, W1_REL, curve_every
from iwgan.metrics.verdicts import run_flags

NAN_METRICS = {"modes": np.nan, "hq_pct": np.nan, "kl": np.nan, "w1": np.nan,
               "recon_error": np.nan, "latent_mmd": np.nan}
CURVE_W1_SAMPLES = 500
CURVE_METRICS = ("modes", "hq_pct", "kl", "w1")


class MixtureCurve(Curve):
    """A mixture run's curve with the plateau rule on W1 and HQ %: W1 may move by W1_REL
    of its level plus the noise floor of ``w1_samples`` points, HQ % by HQ_ABS points."""

    w1_samples = CURVE_W1_SAMPLES

    def limits(self) -> dict:
        floor = w1_floor(self.cfg.mixture, self.cfg.preset, self.w1_samples)
        return {"w1": ("w1", W1_REL, floor), "hq": ("hq_pct", 0.0, HQ_ABS)}

    def flags(self, final: dict) -> dict:
        """The run's collapsed / mode_lost / degraded_late flags (docs/verdicts.md) from
        its final metrics and this curve."""
        k = get_mixture(self.cfg.mixture, self.cfg.preset).n_modes
        return run_flags(self.records, final["modes"], final["hq_pct"], k)

    def continued(self, it: int, models, seconds: float) -> None:
        """One evaluation of the continuation check (iwgan.metrics.continuation) into
        ``continuation``: the curve's modes, HQ %, KL and W1, on the budget's curve's own
        draws (a change along it is the model's), at ``seconds`` of training."""
        self.continuation.append({"iteration": it, "train_seconds": seconds,
                                  **self.coverage(models)})

    def coverage(self, models) -> dict:
        """Modes, HQ % and KL on ``eval_samples`` of the curve's fixed z's and W1 on
        ``w1_samples`` of them against its fixed real set, as the convergence curve
        measures them (its duality gap left out)."""
        method = get_method(self.cfg.method)
        samples = method.generate(models, self.z[:self.cfg.eval_samples]).numpy()
        fake = method.generate(models, self.z[:self.w1_samples]).numpy()
        return {**score_modes(samples, self.mixture.centres, self.mixture.std),
                "w1": w1_exact(fake, self.real)}


class CoverageCurve(MixtureCurve):
    """Modes, HQ % and KL on ``eval_samples`` draws and the exact W1 on
    :data:`CURVE_W1_SAMPLES` against a fixed real set (common random numbers along the
    curve). Where POT is missing, W1 stays empty and so does the plateau rule's verdict,
    which reads it (``w1_missing`` says why)."""

    def __init__(self, cfg):
        super().__init__(cfg, curve_every(cfg.iterations, cfg.curve_points))
        self.w1_missing = w1_unavailable()   # None, or why W1 stays empty
        self.mixture = get_mixture(cfg.mixture, cfg.preset)
        gen = derived_generator(cfg.seed, "curve-reference")
        self.z = torch.randn(cfg.eval_samples, cfg.z_dim, generator=gen)
        self.real = self.mixture.sample(CURVE_W1_SAMPLES, generator=gen).numpy()

    def measure(self, it: int, models) -> dict:
        samples = get_method(self.cfg.method).generate(models, self.z).numpy()
        return {**score_modes(samples, self.mixture.centres, self.mixture.std),
                "w1": (np.nan if self.w1_missing
                       else w1_exact(samples[:CURVE_W1_SAMPLES], self.real))}

    def verdict(self, iterations: int) -> dict:
        return {"converged": np.nan} if self.w1_missing else super().verdict(iterations)

    def coverage(self, models) -> dict:
        return self.measure(0, models)   # the budget's curve's very evaluation


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
    if method.has_encoder:
        codes = method.encode(models, real)
        recon = method.generate(models, codes)
        data.reconstruction_errors = (real - recon).norm(dim=1).numpy()
        data.codes, data.prior = codes.numpy(), prior.numpy()
    return compute_metrics(data), data.samples.astype(np.float32)


class ModeCoverage(MixtureExperiment):
    """Every run scored under the 3-std protocol, with the curve that says whether it
    converged; its final samples kept beside its row (``samples_dir``)."""

    name = "mode_coverage"
    curve_metrics = CURVE_METRICS

    def __init__(self, out: Path = Path("."), samples_dir: Path | None = None,
                 continuation: bool = False):
        super().__init__(out, continuation)
        self.samples_dir = samples_dir

    def columns(self, cfg) -> dict:
        # The curve's settings, which the reports read from the rows.
        return {**super().columns(cfg), "curve_points": cfg.curve_points,
                "curve_w1_samples": CURVE_W1_SAMPLES}

    def curve(self, cfg, run):
        return CoverageCurve(cfg)

    def measure(self, cfg, result, curve, run) -> dict:
        start = time.perf_counter()
        metrics, samples = evaluate(cfg, result.models)
        measured = {"eval_seconds": time.perf_counter() - start, "curve_seconds": curve.seconds,
                    **metrics, **curve.verdict(result.iterations), **curve.flags(metrics),
                    **w1_reason(curve)}
        save_npy(run.path / "samples.npy", samples)
        self.keep(run, result)
        return measured

    def continue_unit(self, unit, curves, results, measured, progress=None) -> list[dict]:
        return continue_members(self, unit, curves, measured, "", progress)

    def recorded(self, rows) -> None:
        """Each trained run's samples copied beside its row, the moment it is written."""
        for row in rows:
            src = self.run_path(row["run_id"]) / "samples.npy"
            if self.samples_dir is not None and row["status"] != "diverged" and src.exists():
                save_npy(Path(self.samples_dir) / f"{row['run_id']}.npy", np.load(src))

    def unmeasured(self, cfg, curve) -> dict:
        return {"eval_seconds": 0.0, "curve_seconds": curve.seconds if curve else 0.0,
                **NAN_METRICS, "converged": False, **w1_reason(curve)}

    def begin(self, configs) -> None:
        write_json(self.out / "results" / "mixtures.json",
                   {f"{m}-{p}": get_mixture(m, p).to_json() for p in PRESETS for m in MIXTURES})


def continue_members(experiment, unit, curves, measured, prefix: str,
                     progress=None) -> list[dict]:
    """The continuation check's columns of every member of a unit whose budget's results
    are measured and saved (``measured``: the budget's final metrics under ``prefix``):
    the unit's trainer trains on (iwgan.engine.trainer.Trainer.extend, stacked members
    and single runs alike), each member's curve evaluates the continuation, and its end
    is evaluated as the budget's end was (:func:`evaluate`, the same draws). Its curves go
    to ``results/<experiment>_continuation_curves.csv`` (written here, under the file's
    lock; the budget's curves file is left as it was). The verdict, whose tolerances come
    from the cell's seeds, is iwgan.metrics.continuation.judge. ``progress(1)`` after
    every iteration of the continuation (the grid's bar counts it:
    MixtureExperiment.work).
    Nothing where the experiment runs without the check."""
    trainer, experiment.trainer = experiment.trainer, None
    if not experiment.continuation:
        return [{} for _ in unit]
    budget = trainer.iteration
    ends = trainer.extend(continuation.extra_iterations(budget), continuation.lr_fraction(),
                          continuation.evaluation_iterations(budget),
                          lambda k, it, models, seconds: curves[k].continued(it, models,
                                                                             seconds),
                          tick=progress)
    out = []
    for cfg, curve, m, end in zip(unit, curves, measured, ends):
        models = end.pop("models")
        row = {"continued_lr_fraction": continuation.lr_fraction(),
               "continued_lr": continuation.lr_fraction() * cfg.lr, **end}
        if models is not None:
            metrics, _ = evaluate(cfg, models)
            budget_end = [r for r in curve.records if r["iteration"] == budget]
            row.update(continuation.trends(budget_end + curve.continuation, budget))
            for key in ("modes", "hq_pct", "w1"):
                row[f"continued_{key}"] = metrics[key]
                row[f"continued_{key}_change"] = metrics[key] - m[f"{prefix}{key}"]
        out.append(row)
    frames = [curve_frame(curve.continuation, experiment.columns(cfg), CURVE_METRICS)
              for cfg, curve in zip(unit, curves) if curve.continuation]
    if frames:
        name = f"{experiment.name}_continuation_curves.csv"
        upsert_curves(experiment.results_csv.with_name(name), frames)
    return out


def w1_reason(curve: CoverageCurve | None) -> dict:
    """Where POT was missing, W1 and the converged flag stay empty, and the row says why."""
    return {"w1_unavailable": curve.w1_missing} if curve and curve.w1_missing else {}


def run_mode_coverage(configs, out: Path, jobs: int = 1, resume: bool = False,
                      stack: str = "auto", max_stack: int | None = None,
                      samples_dir: Path | None = None, executor=None,
                      continuation: bool = False) -> list:
    """The mode-coverage grid into ``out``: one results row per run, written as each unit
    finishes (iwgan.experiments.skeleton.run_experiment)."""
    return run_experiment(ModeCoverage(out, samples_dir, continuation), configs, executor,
                          jobs, resume, stack, max_stack)


def add_arguments(p) -> None:
    add_grid_arguments(p)
    add_continuation_argument(p)
    add_protocol_argument(p)


def add_protocol_argument(p) -> None:
    p.add_argument("--protocol", choices=PROTOCOLS, default="identical",
                   help="identical: every method at the profile's one recipe (the paper's "
                   "comparison; the default); tuned: each method x preset at the recipe "
                   "`python -m iwgan tune` selected (results/tuning/selected.json; "
                   "docs/tuning.md)")


def command(args) -> int:
    configs = grid_configs(args)
    if args.protocol == "tuned":
        for name, _ in args.overrides:
            if name in SEARCHED:
                raise ValueError(f"--set {name} with --protocol tuned: the selected recipe "
                                 f"sets {name}; drop --set {name}, or use --protocol "
                                 "identical")
        configs = tuned_configs(configs, args.out / "results")
    results = args.out / "results"
    experiment = ModeCoverage(args.out, samples_dir=results / "mode_coverage_samples",
                              continuation=args.continue_check)
    with open_executor(executor_options(args)) as executor:   # reachable, before writing
        start = time.perf_counter()
        rows = run_experiment(experiment, configs, executor, resume=args.resume,
                              stack=args.stack, max_stack=args.max_stack)
    rc = finish(args, experiment, configs, rows, time.perf_counter() - start)
    if configs[0].profile != "converged":
        reference = committed_reference(args.protocol)
        if reference is None:
            print(f"no distance from a converged reference: the committed "
                  f"results/mode_coverage.csv has no converged rows of the {args.protocol} "
                  "protocol yet (docs/converged.md, docs/tuning.md)")
        else:   # the whole grid's rows, those a --resume skipped too
            ids = {c.run_id for c in configs}
            grid = experiment.read(experiment.results_csv, damaged="drop")
            for line in distance_to_reference(grid[grid.run_id.isin(ids)], reference):
                print(line)
    return rc


def committed_reference(protocol: str = "identical") -> pd.DataFrame | None:
    """The converged rows of ``protocol`` in the suite's committed
    results/mode_coverage.csv, if any (never another protocol's)."""
    path = REPO_ROOT / "results" / "mode_coverage.csv"
    if not path.exists():
        return None
    df = read_results(path)
    df = df[(df.profile == "converged") & (df.protocol == protocol)
            & df.status.isin(["finished", "stopped_early"])]
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
