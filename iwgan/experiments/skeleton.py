"""The skeleton every experiment shares: its evaluation curve, its run record, its results
rows and its grid.

An experiment is a small class (:class:`Experiment`): the results table it writes, the
columns a run's row starts with, the curve a run is evaluated on while it trains
(:class:`Curve`), how it trains a unit, and what it measures once a run has trained.
Everything else is here, written once for mode coverage, convergence, images and the
regression subsets:

- :func:`run_unit` trains a unit (one run, or a stack of runs trained as one model:
  iwgan.engine.stacking) and records every member as a single run: its run directory
  (``config.json`` and ``manifest.json`` before training, ``metrics.json`` after) and its
  results row, finished, stopped early or diverged (:class:`RunRecord`);
- :func:`failed_unit` gives the rows of a unit whose worker failed, never lost;
- :func:`run_experiment` refuses a results table of another schema and a run directory
  that is a file before anything is written, skips what a ``--resume`` finds finished,
  plans the units, runs them on an executor (iwgan.engine.executors: local processes,
  Dask or Slurm; one loop for all, with its retries and interrupts: iwgan.engine.grid.drive)
  and writes each unit's rows (and curves) the moment it comes back;
- :func:`finish` records the grid's wall time, says what finished, diverged and failed,
  rebuilds the report, and exits 1 when a run failed.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from iwgan.engine.devices import configure_torch
from iwgan.engine.executors import ExecutorOptions, LocalExecutor
from iwgan.engine.grid import budget, unfinished
from iwgan.engine.records import (
    KEY_COLUMNS,
    check_run_dirs,
    curve_frame,
    manifest,
    manifest_columns,
    now,
    read_results,
    upsert_curves,
    upsert_results,
)
from iwgan.engine.stacking import plan_stacks
from iwgan.engine.trainer import Evaluate, LogTo, Progress
from iwgan.files import append_jsonl, update_json, write_json
from iwgan.metrics.plateau import assessable, settled

NAN = float("nan")


class Curve:
    """A run's evaluation curve: one record per evaluation (``iteration``,
    ``train_seconds``, then what :meth:`measure` returns), every ``every`` iterations of
    the trainer's ``Evaluate`` hook; :meth:`verdict` is the plateau rule
    (iwgan.metrics.plateau) on the metrics :meth:`limits` names. Subclasses draw their
    fixed evaluation sets in ``__init__`` from generators of the run's own, so that
    training's stream is never touched."""

    def __init__(self, cfg, every: int):
        self.cfg, self.every = cfg, every
        self.records: list[dict] = []
        self.continuation: list[dict] = []   # the continuation check's (mixture curves)
        self.seconds = 0.0          # time spent evaluating, outside training time
        self.last_log: dict = {}    # the last logged training record

    def on_log(self, record: dict) -> None:
        self.last_log = record

    def __call__(self, it: int, models) -> dict:
        start = time.perf_counter()
        record = {"iteration": it,
                  "train_seconds": self.last_log.get("wall_time", 0.0) if it else 0.0,
                  **self.measure(it, models)}
        self.records.append(record)
        self.seconds += time.perf_counter() - start
        return record

    def measure(self, it: int, models) -> dict:
        """One evaluation of ``models`` at iteration ``it``."""
        raise NotImplementedError

    def limits(self) -> dict:
        """The plateau rule's limits: label -> (metric, relative, absolute)."""
        raise NotImplementedError

    def verdict(self, iterations: int) -> dict:
        """Whether the run had stopped changing over the last quarter of ``iterations``
        (NaN when too few evaluations fall there, e.g. a run stopped early)."""
        if not assessable(self.records, iterations):
            return {"converged": NAN}
        return settled(self.records, iterations, self.limits())


def jsonable(row: dict) -> dict:
    """A results row as JSON holds it: NaN as null, numpy scalars as Python numbers."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else
                v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}


def ended(start: dict, result=None, error: str | None = None) -> dict:
    """A results row's columns of how its run ended, after ``start``: finished or stopped
    early (its iterations), diverged (at which iteration), or failed (its worker's
    ``error``; no ``result``)."""
    if result is None:
        return {**start, "status": "failed", "error": error, "diverged_at": NAN,
                "iterations_run": 0, "train_seconds": NAN}
    diverged = result.status == "diverged"
    return {**start, "status": result.status,
            "diverged_at": result.diverged_at if diverged else NAN,
            "iterations_run": result.iterations, "train_seconds": result.wall_time}


class RunRecord:
    """One run's record: its directory, with ``config.json`` and ``manifest.json`` written
    before it trains, and its results row, begun from its settings and manifest and
    ended by :meth:`close`."""

    def __init__(self, experiment: Experiment, cfg, stacked: list[str]):
        self.cfg, self.path = cfg, experiment.run_path(cfg.run_id)
        self.path.mkdir(parents=True, exist_ok=True)
        # an earlier attempt's: a metrics.json always belongs to a run that ended
        (self.path / "metrics.json").unlink(missing_ok=True)
        self.manifest = {**manifest(cfg, stacked=stacked), **experiment.manifest_extra(cfg)}
        write_json(self.path / "config.json", cfg.to_dict())
        write_json(self.path / "manifest.json", self.manifest)
        self.start = experiment.first_columns(cfg, self.manifest, len(stacked))

    def log(self, record: dict) -> None:
        append_jsonl(self.path / "log.jsonl", record)

    def close(self, result, measured: dict) -> dict:
        """The row of the trained member ``result`` (iwgan.engine.trainer.MemberResult)
        with the ``measured`` columns, written to ``metrics.json``; the manifest gets the
        time it finished."""
        row = {**ended(self.start, result), **measured, "finished": now()}
        note = ({"error": f"non-finite loss at iteration {result.diverged_at}"}
                if result.status == "diverged" else {})
        write_json(self.path / "metrics.json", {**jsonable(row), **note})
        write_json(self.path / "manifest.json", {**self.manifest, "finished": row["finished"]})
        return row


class Experiment:
    """What one experiment is made of; :func:`run_unit` and :func:`run_experiment` do the
    rest. ``out`` is the root of its ``results/``, ``runs/`` and ``reports/``."""

    name = ""                     # results/<name>.csv (and <name>_curves.csv)
    curve_metrics: tuple = ()     # the curves' metrics in <name>_curves.csv; () for none
    keys = KEY_COLUMNS            # the results table's identifying columns ...
    order = ("profile", "preset", "mixture", "method", "seed")   # ... and its sort order
    runs = "runs"                 # run directories: <out>/<runs>/<run_id>/
    share_settings = False        # stack runs that differ in lr, betas, loss weights or
                                  # EMA decay too (a search's candidates)

    def __init__(self, out: Path = Path(".")):
        self.out = Path(out)

    @property
    def results_csv(self) -> Path:
        return self.out / "results" / f"{self.name}.csv"

    def read(self, path: Path, **kw) -> pd.DataFrame:
        """The results table at ``path`` (iwgan.engine.records.read_results: ``required``,
        ``damaged``)."""
        return read_results(path, keys=self.keys, **kw)

    def run_path(self, run_id: str) -> Path:
        return self.out / self.runs / run_id

    def finished_with(self) -> dict:
        """Columns a finished row must also hold for ``--resume`` to skip its run."""
        return {}

    def begin(self, configs) -> None:
        """What the grid records before its runs, for all of ``configs`` (once the checks
        have passed, before ``--resume``'s filter)."""

    def prepare(self, configs, resume: bool) -> None:
        """Checks and set-up before anything is written (after ``--resume``'s filter)."""

    def manifest_extra(self, cfg) -> dict:
        return {}

    def columns(self, cfg) -> dict:
        """The columns a run's row starts with: who it is and its settings."""
        raise NotImplementedError

    def first_columns(self, cfg, record: dict, stacked: int) -> dict:
        return {**self.columns(cfg), **manifest_columns(record), "stacked": stacked}

    def curve(self, cfg, run: RunRecord) -> Curve | None:
        return None

    def train(self, unit, runs: list[RunRecord], hooks: list, resume: bool = False,
              stop_after: int | None = None) -> list:
        """Train the unit with ``hooks`` (and its own); one MemberResult per config."""
        raise NotImplementedError

    def measure(self, cfg, result, curve: Curve | None, run: RunRecord) -> dict:
        """The columns of a trained member (finished or stopped early), writing what it
        keeps of it (samples, arrays, checkpoint)."""
        raise NotImplementedError

    def continue_unit(self, unit, curves: list, results: list, measured: list,
                      progress=None) -> list[dict]:
        """Columns every member's row gets after its budget's are measured and saved (the
        continuation check of the mixture experiments), ``progress(1)`` after each of its
        iterations; none by default."""
        return [{} for _ in unit]

    def work(self, unit) -> int:
        """The iterations a unit trains, as the grid's progress bar counts them."""
        return budget(unit)

    def unmeasured(self, cfg, curve: Curve | None) -> dict:
        """The measured columns of a run that diverged (or failed: no curve), as NaN."""
        return {"converged": False}

    def recorded(self, rows: list[dict]) -> None:
        """After a unit's rows are written (in the coordinating process)."""

    def wall_time(self, configs, rows, wall: float, jobs: int) -> tuple[str, dict]:
        """The key and entry of the grid's record in results/benchmarks/."""
        raise NotImplementedError

    def report(self, results: Path, reports: Path) -> list[Path]:
        raise NotImplementedError


def run_unit(unit, experiment: Experiment, progress=None, resume: bool = False,
             stop_after: int | None = None) -> list[tuple[dict, pd.DataFrame | None]]:
    """Train a unit's configs as one model, then measure and record every member as a
    single run: [(results row, curve in long format), ...]. ``resume`` continues from a
    checkpoint where the experiment keeps them; ``stop_after`` stops training after that
    iteration without recording, as a kill would (the regression check's interrupted
    runs), and returns nothing."""
    unit = list(unit)
    configure_torch(unit[0])  # before the manifests, so they record the run's threads
    stacked = [c.run_id for c in unit]
    runs = [RunRecord(experiment, c, stacked) for c in unit]
    curves = [experiment.curve(c, run) for c, run in zip(unit, runs)]
    hooks = [LogTo([c.on_log for c in curves])] if curves[0] is not None else []
    if curves[0] is not None:
        hooks.append(Evaluate(lambda k, it, models: curves[k](it, models), curves[0].every))
    if progress:
        hooks.append(Progress(progress))
    results = experiment.train(unit, runs, hooks, resume=resume, stop_after=stop_after)
    if stop_after is not None:
        return []
    measured = [experiment.unmeasured(cfg, curve) if result.status == "diverged"
                else experiment.measure(cfg, result, curve, run)
                for cfg, run, curve, result in zip(unit, runs, curves, results)]
    # after the budget's metrics and checkpoints: a continuation trains the networks on
    continued = experiment.continue_unit(unit, curves, results, measured, progress)
    out = []
    for run, curve, result, m, c in zip(runs, curves, results, measured, continued):
        row = run.close(result, {**m, **c})
        records = curve.records if curve is not None else []
        out.append((row, curve_frame(records, row, experiment.curve_metrics)
                    if experiment.curve_metrics else None))
    return out


def failed_unit(unit, error: str, experiment: Experiment) -> list:
    """The rows of a unit whose worker failed twice (iwgan.engine.executors): recorded,
    never lost; ``--resume`` runs them again."""
    stacked = [c.run_id for c in unit]
    out = []
    for cfg in unit:
        start = experiment.first_columns(cfg, manifest(cfg, stacked=stacked), len(unit))
        row = {**ended(start, error=error), **experiment.unmeasured(cfg, None),
               "finished": now()}
        out.append((row, curve_frame([], row, experiment.curve_metrics)
                    if experiment.curve_metrics else None))
    return out


def run_experiment(experiment: Experiment, configs, executor=None, jobs: int = 1,
                   resume: bool = False, stack: str = "auto", max_stack: int | None = None,
                   stop_after: int | None = None) -> list[dict]:
    """The experiment's grid: with ``resume``, the runs its results table has not finished
    (the others continue from their checkpoints where the experiment keeps them); units
    stacked as ``stack`` says (auto | on | off: iwgan.engine.stacking.plan_stacks); run by
    ``executor`` (default: ``jobs`` local processes); each unit's rows and curves written
    to ``results/`` the moment it comes back. Returns the rows."""
    csv = experiment.results_csv
    if csv.exists():   # refuse a file of another schema; name its damaged rows
        experiment.read(csv, damaged="warn")
    check_run_dirs(experiment.out / experiment.runs, configs)
    experiment.begin(configs)
    if resume:
        configs = unfinished(configs, csv, read=experiment.read,
                             also=experiment.finished_with())
    experiment.prepare(configs, resume)
    if not configs:
        return []
    curves_csv = csv.with_name(f"{csv.stem}_curves.csv")

    def record(pairs):
        rows = [row for row, _ in pairs]
        if not rows:
            return
        upsert_results(csv, rows, keys=experiment.keys, order=experiment.order)
        if experiment.curve_metrics:
            upsert_curves(curves_csv, [curve for _, curve in pairs])
        experiment.recorded(rows)
        for row in rows:
            if row["status"] == "diverged":
                tqdm.write(f"{row['run_id']}: diverged at iteration {row['diverged_at']}")

    runner = functools.partial(run_unit, experiment=experiment, resume=resume,
                               stop_after=stop_after)
    executor = executor or LocalExecutor(ExecutorOptions(jobs=jobs))
    units = plan_stacks(configs, stack, max_stack, share_settings=experiment.share_settings)
    done = executor.run(units, runner, record,
                        functools.partial(failed_unit, experiment=experiment),
                        work=experiment.work)
    return [row for pairs in done for row, _ in pairs]


def grid_summary(rows, wall: float) -> str:
    """One line: how many runs finished, diverged and failed, naming the last two."""
    def named(status):
        ids = [r["run_id"] for r in rows if r["status"] == status]
        return f"{len(ids)} {status}" + (f" ({', '.join(ids)})" if ids else "")

    trained = sum(r["status"] in ("finished", "stopped_early") for r in rows)
    return f"{len(rows)} runs in {wall:.0f} s: {trained} finished, {named('diverged')}, " \
        f"{named('failed')}"


def finish(args, experiment: Experiment, configs, rows, wall: float) -> int:
    """Record the grid's wall time (when it ran anything), say what finished, diverged and
    failed, rebuild the experiment's report; exit status 1 when a run failed (its row says
    why), else 0."""
    if rows:
        key, entry = experiment.wall_time(configs, rows, wall, getattr(args, "jobs", 1))
        entry["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        update_json(experiment.out / "results" / "benchmarks"
                    / f"{experiment.name}_wall_time.json",
                    lambda record: record.update({key: entry}))
    print(grid_summary(rows, wall))
    if not args.no_report:
        for path in experiment.report(experiment.out / "results", experiment.out / "reports"):
            print(f"report: {path}")
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        print(f"error: {len(failed)} run(s) failed, e.g. {failed[0]['run_id']}: "
              f"{failed[0].get('error')}; fix the cause and re-run with --resume",
              file=sys.stderr)
        return 1
    return 0
