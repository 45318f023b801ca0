"""The two protocols of a comparison (docs/tuning.md): ``identical``, every method at its
profile's one recipe (the paper's comparison), and ``tuned``, each method x preset at the
recipe an equal-budget search selected (iwgan.experiments.tuning, ``python -m iwgan
tune``), read from ``results/tuning/selected.json`` by :func:`tuned_configs`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

TUNING_SEEDS = 1000     # tuning seeds are >= this; reported seeds below it
SEARCHED = ("lr", "beta1", "beta2", "n_critic", "lambda_gp", "lambda_mmd", "options")
TUNE_COMMAND = "python -m iwgan tune"


def tuned_configs(configs, results: Path) -> list:
    """The reported runs under the tuned protocol: each config with its method x preset's
    selected recipe (results/tuning/selected.json) at the profile and budget it was
    selected at; a method or preset whose search has not run is refused, naming the
    command that runs it."""
    path = Path(results) / "tuning" / "selected.json"
    selected = json.loads(path.read_text()) if path.exists() else {}
    out = []
    for cfg in configs:
        if cfg.seed >= TUNING_SEEDS:
            raise ValueError(f"seed {cfg.seed} is a tuning seed (>= {TUNING_SEEDS}): the "
                             f"tuned protocol reports seeds 0 to {TUNING_SEEDS - 1}")
        chosen = selected.get(cfg.profile, {}).get(cfg.preset, {}).get(cfg.method)
        if chosen is None:
            raise ValueError(f"--protocol tuned: no selected recipe for {cfg.method} on the "
                             f"{cfg.preset} preset at the {cfg.profile} profile in {path}; "
                             f"run `{TUNE_COMMAND} --profile {cfg.profile} --presets "
                             f"{cfg.preset} --methods {cfg.method}` first")
        if chosen["iterations"] != cfg.iterations:
            raise ValueError(f"--protocol tuned: {cfg.method}'s recipe on {cfg.preset} was "
                             f"selected at {chosen['iterations']:,} iterations, this grid "
                             f"trains {cfg.iterations:,}; use the same budget")
        out.append(dataclasses.replace(cfg, **chosen["recipe"], protocol="tuned"))
    return out
