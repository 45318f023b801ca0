"""The tuned protocol's search (docs/tuning.md): every method at its best under an equal
tuning budget, as in Lucic et al. 2018.

``python -m iwgan tune`` (``nox -s tune``) trains, for every method x preset, the same
number of configurations (:data:`CONFIGURATIONS`) of a stated space (:data:`SPACE`, or
``--space FILE``) that contains the method's published recipe (:data:`PUBLISHED`), at one
profile's iteration budget, on every mixture and on tuning seeds (>= :data:`TUNING_SEEDS`)
disjoint from the reported seeds; scores each configuration by the one score stated
before any run (:func:`run_score`, averaged over mixtures and seeds) and writes:

- ``results/tuning/space.json``: the space searched and the published recipes;
- ``results/tuning/search.csv`` (and ``search_curves.csv``): every search run's row, with
  its ``candidate`` (index in the space) and ``recipe``;
- ``results/tuning/selected.json``: per profile, preset and method, the selected recipe,
  its score and every candidate's, once that method x preset's search is complete.

The search is a mode-coverage grid on the suite's grid engine (iwgan.experiments.skeleton,
iwgan.engine.grid): resumable with ``--resume``, and a Ctrl-C keeps every finished run.
``python -m iwgan mode-coverage --protocol tuned`` then trains the reported seeds with the
selected recipes (:func:`tuned_configs`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pandas as pd

from iwgan.core.methods import get_method
from iwgan.data.mixtures import get_mixture
from iwgan.engine.config import PROFILES, same_recipe
from iwgan.engine.executors import executor_options, open_executor
from iwgan.engine.records import REPO_ROOT, read_json
from iwgan.experiments.common import add_grid_arguments, grid_configs
from iwgan.experiments.mode_coverage import ModeCoverage
from iwgan.experiments.protocols import SEARCHED, TUNING_SEEDS
from iwgan.experiments.skeleton import finish, run_experiment
from iwgan.files import update_json
from iwgan.metrics.mixture import run_score

CONFIGURATIONS = 8      # configurations per method: the equal budget
DEFAULT_TUNING_SEEDS = 2

# Each method's published recipe, with its source; the space must contain it. A field
# left out takes the run's profile value (iteration budget, schedule, moving average and
# width are the profile's for every candidate: the same budget for all).
PUBLISHED: dict[str, dict] = {
    # the authors' code (docs/methods/iwgan.md; ../shared/docs/protocols.md)
    "iwgan": dict(lr=1e-4, beta1=0.5, beta2=0.9, n_critic=5, lambda_gp=5.0,
                  lambda_mmd=10.0),
    # Gulrajani et al.'s toy code (gan_toy.py): lambda 0.1, Adam 1e-4 (0.5, 0.9), 5 critic
    # steps
    "wgan_gp": dict(lr=1e-4, beta1=0.5, beta2=0.9, n_critic=5, lambda_gp=0.1),
    # Dumoulin et al. 2017 (ALI), appendix: Adam 1e-4, beta1 0.5, beta2 1e-3
    "ali": dict(lr=1e-4, beta1=0.5, beta2=1e-3),
    # Donahue et al. 2017 (BiGAN): Adam 2e-4, beta1 0.5 (beta2 Adam's default)
    "bigan": dict(lr=2e-4, beta1=0.5, beta2=0.999),
    # PacGAN's GAN on the mixtures (Lin et al. 2018): Adam 1e-4, beta1 0.8
    "gan": dict(lr=1e-4, beta1=0.8, beta2=0.999),
    # Rosca et al. 2017 give no toy recipe: the suite's documented defaults
    # (docs/methods/alpha_gan.md: Adam 1e-4 (0.5, 0.9), lambda_rec 1)
    "alpha_gan": dict(lr=1e-4, beta1=0.5, beta2=0.9, options={"lambda_rec": 1.0}),
}


def _grid(lrs, **fixed) -> list[dict]:
    return [dict(lr=lr, **fixed) for lr in lrs]


# The stated space: CONFIGURATIONS per method, keyed by name (a method not registered
# yet is skipped), every entry giving every setting its method reads, so that no two
# entries train alike at any profile. Each holds the published recipe (first) and the
# identical protocol's converged recipe (lr 1e-3, Adam (0.5, 0.9), 5 critic steps,
# lambda_GP 5), and around them the learning rate over 1e-4 .. 1e-3 with the method's
# own knob (lambda_GP, n_critic, lambda_MMD, Adam's beta2, lambda_rec).
ADAM = dict(beta1=0.5, beta2=0.9)
SPACE: dict[str, list[dict]] = {
    "iwgan": [PUBLISHED["iwgan"],
              *[dict(lr=lr, **ADAM, n_critic=nc, lambda_gp=gp, lambda_mmd=mmd)
                for lr, nc, gp, mmd in ((1e-3, 5, 5.0, 10.0), (3e-4, 5, 5.0, 10.0),
                                        (3e-4, 2, 5.0, 10.0), (3e-4, 5, 1.0, 10.0),
                                        (1e-3, 5, 1.0, 10.0), (3e-4, 5, 5.0, 1.0),
                                        (1e-3, 2, 5.0, 10.0))]],
    "wgan_gp": [PUBLISHED["wgan_gp"],
                *[dict(lr=lr, **ADAM, n_critic=nc, lambda_gp=gp)
                  for lr, nc, gp in ((1e-3, 5, 5.0), (1e-4, 5, 1.0), (3e-4, 5, 0.1),
                                     (3e-4, 5, 1.0), (3e-4, 5, 5.0), (1e-3, 5, 0.1),
                                     (3e-4, 2, 1.0))]],
    # the discriminator GANs: lr x Adam's beta2, and one more near the published recipe
    "ali": [PUBLISHED["ali"], *_grid((1e-4, 3e-4, 1e-3), beta1=0.5, beta2=0.9),
            *_grid((1e-4, 3e-4, 1e-3), beta1=0.5, beta2=0.999),
            dict(lr=3e-4, beta1=0.5, beta2=1e-3)],
    "bigan": [PUBLISHED["bigan"], *_grid((1e-4, 3e-4, 1e-3), beta1=0.5, beta2=0.9),
              *_grid((1e-4, 3e-4, 1e-3), beta1=0.5, beta2=0.999),
              dict(lr=2e-4, beta1=0.5, beta2=0.9)],
    "gan": [PUBLISHED["gan"], *_grid((1e-4, 3e-4, 1e-3), beta1=0.5, beta2=0.9),
            *_grid((1e-4, 3e-4, 1e-3), beta1=0.5, beta2=0.999),
            dict(lr=3e-4, beta1=0.8, beta2=0.999)],
    "alpha_gan": [PUBLISHED["alpha_gan"],
                  *[dict(lr=lr, **ADAM, options={"lambda_rec": rec})
                    for lr, rec in ((1e-3, 1.0), (3e-4, 1.0), (1e-4, 10.0), (3e-4, 10.0),
                                    (1e-3, 10.0))],
                  *[dict(lr=lr, beta1=0.5, beta2=0.999, options={"lambda_rec": 1.0})
                    for lr in (3e-4, 1e-3)]],
}


# --- the space ----------------------------------------------------------------------------

def load_space(path: Path | None) -> dict[str, list[dict]]:
    """The space: :data:`SPACE`, or the JSON file ``path`` (``{"space": {method: [entry,
    ...]}}`` or that mapping itself)."""
    if path is None:
        return SPACE
    record = read_json(Path(path), "give a JSON file {\"space\": {method: [settings, ...]}}")
    space = record.get("space", record) if isinstance(record, dict) else None
    if not isinstance(space, dict) or not all(
            isinstance(v, list) and all(isinstance(e, dict) for e in v) for v in space.values()):
        raise ValueError(f"--space {path}: expected {{\"space\": {{method: [settings, ...]}}}}")
    return space


def check_space(space: dict, methods) -> None:
    """Refuse a space that cannot give an equal-budget search of ``methods``: a method
    without entries, another number of configurations than :data:`CONFIGURATIONS`, an
    unknown setting, or one that leaves out the method's published recipe."""
    for method in methods:
        entries = space.get(method)
        if not entries:
            raise ValueError(f"the search space has no configurations for method {method!r}: "
                             f"give it {CONFIGURATIONS}, its published recipe among them "
                             "(docs/tuning.md)")
        if len(entries) != CONFIGURATIONS:
            raise ValueError(f"the search space gives method {method!r} {len(entries)} "
                             f"configurations: an equal tuning budget is {CONFIGURATIONS} "
                             "for every method")
        for entry in entries:
            unknown = sorted(set(entry) - set(SEARCHED))
            if unknown:
                raise ValueError(f"the search space's entry {entry} of {method!r} sets "
                                 f"{unknown}: a candidate sets only {', '.join(SEARCHED)}")
        published = PUBLISHED.get(method)
        if published is None:
            raise ValueError(f"no published recipe is stated for method {method!r}: add it "
                             "to PUBLISHED in iwgan/experiments/tuning.py (with its source) "
                             "so that the search can be checked to contain it")
        if not any(same_recipe(entry, published) for entry in entries):
            raise ValueError(f"the search space leaves out the published recipe of {method!r} "
                             f"{json.dumps(published)}: add it as one of its "
                             f"{CONFIGURATIONS} configurations (docs/tuning.md)")


# --- the search ---------------------------------------------------------------------------

def search_configs(base, space: dict) -> tuple[list, dict]:
    """Every candidate of the space on every config of ``base`` (one per method, mixture,
    preset and seed), and run_id -> (candidate, recipe); two candidates that train alike
    are refused (an equal budget is so many distinct configurations)."""
    configs, candidates = [], {}
    for cfg in base:
        for k, entry in enumerate(space[cfg.method]):
            tuned = dataclasses.replace(cfg, **entry, protocol="tuned")
            if tuned.run_id in candidates:
                raise ValueError(f"the search space's configurations {candidates[tuned.run_id][0]}"
                                 f" and {k} of {cfg.method!r} train alike at the "
                                 f"{cfg.profile} profile (a setting it does not read, or "
                                 f"the same values): give {CONFIGURATIONS} distinct ones")
            configs.append(tuned)
            candidates[tuned.run_id] = (k, json.dumps(entry, sort_keys=True))
    return configs, candidates


class Search(ModeCoverage):
    """The search's mode-coverage runs: their rows in results/tuning/search.csv, each
    with its candidate and recipe."""

    name = "search"
    share_settings = True   # a stack's members may be different candidates

    def __init__(self, out: Path, candidates: dict):
        super().__init__(out)
        self.candidates = candidates

    @property
    def results_csv(self) -> Path:
        return self.out / "results" / "tuning" / "search.csv"

    def columns(self, cfg) -> dict:
        k, recipe = self.candidates[cfg.run_id]
        return {**super().columns(cfg), "candidate": k, "recipe": recipe}

    def report(self, results, reports):
        return []   # the search's outcome is selected.json; the reports read it


def select(rows: pd.DataFrame, configs, candidates: dict) -> dict:
    """{profile: {preset: {method: selection}}} for every method x preset whose planned
    runs all have a row (trained or diverged): the candidate of the highest mean score
    (:func:`run_score` over mixtures and tuning seeds; a tie goes to the lower index, the
    published recipe first)."""
    rows = rows.set_index("run_id")
    groups: dict = {}
    for cfg in configs:
        groups.setdefault((cfg.profile, cfg.preset, cfg.method), []).append(cfg)
    out: dict = {}
    for (profile, preset, method), group in groups.items():
        if not all(c.run_id in rows.index and rows.loc[c.run_id, "status"] != "failed"
                   for c in group):
            continue    # not complete: a --resume finishes it
        scores: dict = {}
        for cfg in group:
            k, recipe = candidates[cfg.run_id]
            modes_total = len(get_mixture(cfg.mixture, cfg.preset).centres)
            scores.setdefault((k, recipe), []).append(run_score(rows.loc[cfg.run_id],
                                                                 modes_total))
        table = [{"candidate": k, "recipe": json.loads(recipe),
                  "score": sum(s) / len(s), "runs": len(s)}
                 for (k, recipe), s in sorted(scores.items())]
        best = max(table, key=lambda t: (t["score"], -t["candidate"]))
        first = group[0]
        out.setdefault(profile, {}).setdefault(preset, {})[method] = {
            "candidate": best["candidate"], "recipe": best["recipe"], "score": best["score"],
            "iterations": first.iterations,
            "mixtures": sorted({c.mixture for c in group}),
            "tuning_seeds": sorted({c.seed for c in group}),
            "published": PUBLISHED[method], "candidates": table}
    return out


def write_selection(path: Path, selection: dict) -> None:
    def merge(record):
        for profile, presets in selection.items():
            for preset, methods in presets.items():
                record.setdefault(profile, {}).setdefault(preset, {}).update(methods)
    update_json(path, merge)


# --- cost ---------------------------------------------------------------------------------

def estimated_seconds(configs, jobs: int, root: Path = REPO_ROOT) -> tuple[float | None, str]:
    """The grid's estimated wall time from the measured cost of the profile's committed
    mode-coverage grid (results/benchmarks/mode_coverage_wall_time.json: its wall seconds
    per run at its jobs), scaled by iterations and jobs; None where none was measured."""
    path = root / "results" / "benchmarks" / "mode_coverage_wall_time.json"
    profile = configs[0].profile
    measured = json.loads(path.read_text()).get(profile) if path.exists() else None
    if not measured:
        return None, f"no measured cost of the {profile} profile in {path.name}"
    per_run = measured["wall_seconds"] / measured["runs"] * measured["jobs"]
    scale = configs[0].iterations / PROFILES[profile]["iterations"]
    seconds = len(configs) * per_run * scale / jobs
    return seconds, (f"{per_run * scale:.0f} s a run on one process, as the committed "
                     f"{profile} grid measured ({measured['runs']} runs in "
                     f"{measured['wall_seconds']:.0f} s at --jobs {measured['jobs']}, "
                     f"{measured['cpu_count']} CPUs)")


def cost_line(configs, jobs: int) -> str:
    seconds, source = estimated_seconds(configs, jobs)
    methods = sorted({c.method for c in configs})
    presets = sorted({c.preset for c in configs})
    head = (f"tuning search: {len(configs)} runs ({len(methods)} methods x {CONFIGURATIONS} "
            f"configurations x {len(presets)} presets x "
            f"{len({c.mixture for c in configs})} mixtures x "
            f"{len({c.seed for c in configs})} tuning seeds, {configs[0].iterations:,} "
            f"iterations each, profile {configs[0].profile})")
    if seconds is None:
        return f"{head}; estimated wall time unknown: {source}"
    return f"{head}; estimated wall time {seconds / 3600:.1f} h at --jobs {jobs} ({source})"


# --- the command --------------------------------------------------------------------------

def add_arguments(p) -> None:
    add_grid_arguments(p)
    p.set_defaults(first_seed=TUNING_SEEDS, seeds=DEFAULT_TUNING_SEEDS)
    for action in p._actions:    # the search's own seeds: disjoint from the reported ones
        if action.dest == "seeds":
            action.help = f"tuning seeds per configuration (default {DEFAULT_TUNING_SEEDS})"
        if action.dest == "first_seed":
            action.help = (f"first tuning seed (default {TUNING_SEEDS}; at least "
                           f"{TUNING_SEEDS}: the reported seeds are 0 to {TUNING_SEEDS - 1})")
    p.add_argument("--space", type=Path, default=None,
                   help="a JSON search space {\"space\": {method: [settings, ...]}} "
                   f"(default: the stated one, iwgan/experiments/tuning.py; "
                   f"{CONFIGURATIONS} configurations a method, its published recipe "
                   "among them)")
    p.add_argument("--plan", action="store_true",
                   help="print the search's runs and estimated wall time, run nothing")


def check_tuning_seeds(args) -> None:
    if args.first_seed < TUNING_SEEDS:
        raise ValueError(f"--first-seed {args.first_seed}: the search would select on the "
                         f"reported seeds (0 to {TUNING_SEEDS - 1}); tuning seeds start at "
                         f"{TUNING_SEEDS} (the default)")


def record_space(path: Path, space: dict, methods) -> None:
    """The searched space of ``methods`` into ``path``, beside the spaces earlier searches
    of other methods recorded there (a search of some methods never drops the others')."""
    def update(record):
        record.update(configurations=CONFIGURATIONS, published=PUBLISHED,
                      score=run_score.__doc__.split(":", 1)[1].strip())
        record.setdefault("space", {}).update({m: space[m] for m in methods})
    update_json(path, update)


def command(args) -> int:
    check_tuning_seeds(args)
    for name, _ in args.overrides:
        if name in SEARCHED:
            raise ValueError(f"--set {name}: the search space sets {name}; change the space "
                             "(--space) instead")
    for method in args.methods:
        get_method(method)     # an unknown method: one line before anything is written
    space = load_space(args.space)
    check_space(space, args.methods)
    configs, candidates = search_configs(grid_configs(args), space)
    print(cost_line(configs, args.jobs), flush=True)
    if args.plan:
        return 0
    tuning = args.out / "results" / "tuning"
    experiment = Search(args.out, candidates)
    with open_executor(executor_options(args)) as executor:   # reachable, before writing
        record_space(tuning / "space.json", space, args.methods)
        start = time.perf_counter()
        rows = run_experiment(experiment, configs, executor, resume=args.resume,
                              stack=args.stack, max_stack=args.max_stack)
    rc = finish(args, experiment, configs, rows, time.perf_counter() - start)
    selection = select(experiment.read(experiment.results_csv, damaged="drop"), configs,
                       candidates)
    if selection:
        write_selection(tuning / "selected.json", selection)
    for profile, presets in selection.items():
        for preset, methods in presets.items():
            for method, chosen in methods.items():
                print(f"selected: {profile} {preset} {method}: candidate "
                      f"{chosen['candidate']} {json.dumps(chosen['recipe'])} "
                      f"(score {chosen['score']:.3f})")
    return rc
