"""What the grid commands share: their arguments, their configs, and the experiment base
of the mixture grids (mode coverage, convergence)."""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import json
import os
import platform
import sys
from pathlib import Path

import torch

from iwgan.core.methods import DEFAULT_METHODS, METHOD_NAMES, SHARED_SETTINGS, get_method
from iwgan.data.mixtures import MIXTURES, PRESETS, MixtureBatches
from iwgan.engine.config import MAX_SEED, PROFILES, MixtureConfig, make_config, parse_field
from iwgan.engine.devices import check_device, default_device
from iwgan.engine.executors import add_executor_arguments, local_jobs
from iwgan.engine.records import now
from iwgan.engine.stacking import STACK_MODES
from iwgan.engine.trainer import LogTo, Trainer, mixture_hooks
from iwgan.experiments.skeleton import Experiment
from iwgan.files import save_torch
from iwgan.metrics.continuation import extra_iterations, lr_fraction
from iwgan.metrics.plateau import check_assessable
from iwgan.metrics.verdicts import CONTINUATION


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def default_profile(device: str) -> str:
    return "paper" if torch.device(device).type == "cuda" else "quick"


def add_migration_arguments(p: argparse.ArgumentParser, remains: str) -> None:
    """--out and --check of a command that rewrites results/ in place."""
    p.add_argument("--out", type=Path, default=Path("."), help="root of results/")
    p.add_argument("--check", action="store_true",
                   help=f"change nothing; exit 1 if {remains}")


def results_folder(args) -> Path:
    """The results/ folder under --out, refused (one line) where there is none."""
    results = Path(args.out) / "results"
    if not results.is_dir():
        raise ValueError(f"{results}: no results folder; give the root that holds it (--out)")
    return results


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:N (default: cuda where torch sees one, else cpu)")


DEFAULT_SEEDS, CONVERGED_SEEDS = 3, 5   # seeds a cell: the grids', the converged table's


def add_methods_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                   help=f"methods to run: built-in ({' '.join(METHOD_NAMES)}; default "
                   f"{' '.join(DEFAULT_METHODS)}), "
                   "the name an installed package gives its method, or a method module's "
                   "dotted path (docs/add-a-method.md)")


def note_unused_settings(configs, asked: dict) -> None:
    """Say which methods of the grid do not read a setting the command line sets (their
    runs keep the profile's value: iwgan.engine.config)."""
    for name in SHARED_SETTINGS:
        if asked.get(name) is None:
            continue
        ignore = sorted({c.method for c in configs} - {c.method for c in configs
                                                       if name in get_method(c.method).uses})
        if ignore:
            print(f"note: {', '.join(ignore)} do not read {name}: their runs keep the "
                  f"profile's {name}")


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    add_methods_argument(p)
    p.add_argument("--mixtures", nargs="+", default=list(MIXTURES), choices=MIXTURES,
                   metavar="MIXTURE", help=f"mixtures (default: {' '.join(MIXTURES)})")
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS,
                   metavar="PRESET", help=f"mixture presets (default: {' '.join(PRESETS)})")
    p.add_argument("--profile", default=None, choices=list(PROFILES),
                   help="budget and widths (default: paper on CUDA, quick otherwise)")
    p.add_argument("--seeds", type=positive_int, default=None,
                   help=f"number of seeds (default {DEFAULT_SEEDS}; "
                   f"{CONVERGED_SEEDS} under --profile converged, its table's)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--iterations", type=positive_int, help="override the profile's iterations")
    p.add_argument("--batch-size", type=positive_int, help="override the profile's batch size")
    p.add_argument("--stop-rule", action="store_true",
                   help="stop iWGAN runs by Algorithm 1's rule (iwgan only)")
    add_set_argument(p)
    add_device_argument(p)
    p.add_argument("--out", type=Path, default=Path("."),
                   help="root of results/, runs/ and reports/ (default: .)")
    p.add_argument("--jobs", type=positive_int, default=2, help="parallel processes (default 2)")
    p.add_argument("--resume", action="store_true",
                   help="skip runs already finished with the same config in results/")
    p.add_argument("--no-report", action="store_true", help="do not rebuild the report")
    p.add_argument("--stack", choices=STACK_MODES, default="auto",
                   help="train the runs that differ only in seed, mixture or preset as one "
                   "stacked model (iwgan.engine.stacking): auto where it is faster (CUDA; "
                   "CPU at small widths such as quick), on (refuses what cannot be "
                   "stacked), off (one run at a time); stacked members equal single runs "
                   "within float rounding (docs/stacking.md) (default auto)")
    p.add_argument("--max-stack", type=positive_int, default=None,
                   help="at most this many runs in one stacked model (default: all that can "
                   "share one)")
    add_executor_arguments(p)


def add_continuation_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--continue-check", action="store_true",
                   help="after each run's budget (its metrics and checkpoint recorded as "
                   f"without it), train it {100 * CONTINUATION['extra_fraction']:g}%% of "
                   f"its iterations more at a constant {CONTINUATION['lr_fraction']:g} x "
                   "its base learning rate and record the continued_* columns the "
                   "continuation check judges (docs/verdicts.md); the run keeps its run id")


GRID_AXES = {"method": "--methods", "mixture": "--mixtures", "preset": "--presets",
             "dataset": "--dataset", "seed": "--seeds/--first-seed", "profile": "--profile",
             "device": "--device", "protocol": "--protocol"}


def add_set_argument(p: argparse.ArgumentParser, cls=MixtureConfig) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="FIELD=VALUE", type=functools.partial(field_override, cls=cls),
                   help="override any config field, e.g. --set lr=5e-4 --set n_critic=5 "
                   "(repeatable; an overridden run gets its own run id)")


def field_override(text: str, cls=MixtureConfig) -> tuple[str, object]:
    """FIELD=VALUE, the value parsed as the field's type (iwgan.engine.config)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    if name in GRID_AXES:
        raise argparse.ArgumentTypeError(f"{name} is an axis of the grid: use "
                                         f"{GRID_AXES[name]}")
    try:
        return name, parse_field(name, value.strip(), cls)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def device_of(args) -> str:
    """The device asked for (default: CUDA where torch sees one), checked: a device this
    machine lacks is an error before anything is written."""
    device = args.device or default_device()
    check_device(device)
    return device


def seeds_of(args, profile: str) -> range:
    """--seeds, or its default: the converged table has 5 seeds a cell, the others 3."""
    n = args.seeds or (CONVERGED_SEEDS if profile == "converged" else DEFAULT_SEEDS)
    if not 0 <= args.first_seed <= MAX_SEED - n + 1:
        raise ValueError(f"--first-seed must be in [0, {MAX_SEED - n + 1}] for {n} seeds "
                         f"(seeds are 64-bit: 0 to {MAX_SEED}), got {args.first_seed}")
    return range(args.first_seed, args.first_seed + n)


def merge_repeated(args, axes=("methods", "mixtures", "presets")) -> None:
    """A value given twice on an axis (``--methods iwgan iwgan``) is one value: the grid
    plans each run once, and says so."""
    for axis in axes:
        values = getattr(args, axis, None)
        if values is None or len(set(values)) == len(values):
            continue
        twice = sorted({v for v in values if values.count(v) > 1})
        setattr(args, axis, list(dict.fromkeys(values)))
        print(f"note: --{axis} repeats {', '.join(twice)}: each run is planned once",
              file=sys.stderr)


def grid_configs(args) -> list:
    """The grid's configs, after checking the device, merging repeated axis values and
    capping ``--jobs`` (iwgan.engine.executors.local_jobs): nothing is written before."""
    device = device_of(args)
    profile = args.profile or default_profile(device)
    merge_repeated(args)
    args.jobs = local_jobs(args)
    overrides = dict(args.overrides)
    configs = [make_config(profile, **{**overrides, "method": m, "mixture": x, "preset": p,
                                    "seed": s, "device": device,
                                    "iterations": args.iterations or overrides.get("iterations"),
                                    "batch_size": args.batch_size or overrides.get("batch_size"),
                                    "stop_rule": args.stop_rule or overrides.get("stop_rule")})
            for p in args.presets for x in args.mixtures for m in args.methods
            for s in seeds_of(args, profile)]
    if profile == "converged":   # its tables say which runs converged: they must be able to
        check_assessable(configs[0].iterations, configs[0].curve_points)
    note_unused_settings(configs, overrides)
    return configs


def wall_time_key(name: str, grid: dict, whole: dict, configs) -> str:
    """The key of a grid's wall-time record: ``name`` for the whole default grid (``whole``)
    at the profile's settings, else ``name`` and a digest of what it ran and of the
    settings it overrides, so that two grids into one ``--out`` keep both records."""
    overrides = sorted({json.dumps(c.overrides(), sort_keys=True) for c in configs})
    if grid == whole and overrides == ["{}"]:
        return name
    # without overrides the digest is of the grid alone, as the records before them were
    ran = {**grid, **({"overrides": overrides} if overrides != ["{}"] else {})}
    return f"{name}-{hashlib.sha256(json.dumps(ran, sort_keys=True).encode()).hexdigest()[:8]}"


class MixtureExperiment(Experiment):
    """What the mixture grids share: their rows' first columns, training (stacked members,
    Algorithm 1's stopping rule where asked), the networks kept at the end, the
    wall-time record, and (``continuation``) the continuation check.

    The continuation check (iwgan.metrics.continuation; ``--continue-check``) is a
    measurement of a run, not a setting of it: training to the budget, the budget's
    metrics and its checkpoint are exactly those of the run without it, so the run keeps
    its run_id, config_hash and cell, and its row gets the ``continued_*`` columns (a
    re-run with the check replaces a row without them). ``--resume`` with the check runs
    again the finished rows that lack them (:meth:`finished_with`)."""

    def __init__(self, out: Path = Path("."), continuation: bool = False):
        super().__init__(out)
        self.continuation = continuation
        self.trainer = None   # the unit's trainer, which the continuation trains on

    def finished_with(self) -> dict:
        return {"continued_lr_fraction": lr_fraction()} if self.continuation else {}

    def work(self, unit) -> int:
        """The budget, and the continuation check's iterations where it runs."""
        its = super().work(unit)
        return its + (extra_iterations(its) if self.continuation else 0)

    def columns(self, cfg) -> dict:
        return {"run_id": cfg.run_id, "method": cfg.method, "mixture": cfg.mixture,
                "preset": cfg.preset, "seed": cfg.seed, "profile": cfg.profile,
                "iterations": cfg.iterations, "width": cfg.width,
                "batch_size": cfg.batch_size, "lr": cfg.lr, "lr_schedule": cfg.lr_schedule,
                "n_critic": cfg.n_critic, "ema": cfg.ema, "protocol": cfg.protocol,
                "config_hash": cfg.hash(),
                "cell": cfg.cell_key()}

    def train(self, unit, runs, hooks, resume=False, stop_after=None):
        for run in runs:   # a mixture run starts over: its log does too
            (run.path / "log.jsonl").unlink(missing_ok=True)
        hooks = [LogTo([run.log for run in runs]), *hooks, *mixture_hooks(unit)]
        trainer = Trainer(unit, MixtureBatches(unit), hooks)
        self.trainer = trainer if self.continuation else None
        return trainer.fit(until=stop_after)

    def keep(self, run, result) -> None:
        """The trained member's networks and optimiser states, in its run directory."""
        save_torch(run.path / "checkpoint.pt", result.checkpoint())

    def wall_time(self, configs, rows, wall, jobs):
        grid = {"methods": sorted({c.method for c in configs}),
                "mixtures": sorted({c.mixture for c in configs}),
                "presets": sorted({c.preset for c in configs}),
                "seeds": sorted({c.seed for c in configs})}
        whole = {"methods": sorted(DEFAULT_METHODS), "mixtures": sorted(MIXTURES),
                 "presets": sorted(PRESETS), "seeds": grid["seeds"]}
        key = wall_time_key(",".join(sorted({c.profile for c in configs})), grid, whole,
                            configs)
        # Other processes on the machine inflate wall time: the load averages at the end
        # of the grid (iwgan.experiments.skeleton.finish) say how busy it was.
        return key, {"runs": len(rows), "wall_seconds": round(wall, 1), "jobs": jobs, **grid,
                     "device": sorted({c.device for c in configs}),
                     "cpu_count": os.cpu_count(), "platform": platform.platform(),
                     "date": now()}

    def report(self, results, reports):
        # Imported here: the report modules pull in matplotlib and seaborn, which the
        # grid's worker processes never need.
        report = importlib.import_module(f"iwgan.reporting.{self.name}")
        # the scorecard's verdicts read this experiment's results too
        scorecard = importlib.import_module("iwgan.reporting.scorecard")
        return [report.build_report(results, reports), scorecard.build_report(results, reports)]
