"""One typed config per run, named profiles, strict overrides.

A run is (method, mixture, preset, seed, profile). The profile fixes the budget and the
network width; any field can then be overridden by name, and unknown names are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from iwgan.mixtures import MIXTURES, PRESETS


@dataclass(frozen=True)
class RunConfig:
    method: str = "iwgan"
    mixture: str = "ring"
    preset: str = "paper"          # "paper" or "literature" (see iwgan.mixtures)
    seed: int = 0
    profile: str = "quick"
    arch: str = "mixture"          # architecture preset of iwgan.networks
    width: float = 1.0             # multiplier on every hidden size; 1 = Appendix D1
    z_dim: int = 5
    iterations: int = 20_000       # outer iterations of Algorithm 1
    batch_size: int = 256
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.9
    n_critic: int = 5              # critic steps per outer iteration
    lambda_gp: float = 5.0         # gradient-penalty weight (lambda_1 in Algorithm 1)
    lambda_mmd: float = 10.0       # MMD weight (lambda_2 in Algorithm 1)
    log_every: int = 50            # iterations between JSON-lines log records
    eval_samples: int = 2_500      # samples drawn for the final metrics
    stop_rule: bool = False        # Algorithm 1's stopping rule on the cheap estimates
    stop_gap: float = 0.05         # epsilon_1: stop when |dual gap| < this ...
    stop_loss: float = 0.05        # epsilon_2: ... and |L| < this (window means)
    stop_window: int = 100         # iterations averaged before the rule is checked
    threads: int = 0               # torch CPU threads; 0 = leave torch's default
    deterministic: bool = False    # torch.use_deterministic_algorithms + cuDNN flags
    device: str = "cpu"
    options: dict = field(default_factory=dict)  # method-specific options (see methods)

    def __post_init__(self):
        from iwgan.methods import METHOD_NAMES, get_method, resolve_options

        check_choice("method", self.method, METHOD_NAMES)
        check_choice("mixture", self.mixture, MIXTURES)
        check_choice("preset", self.preset, PRESETS)
        check_choice("profile", self.profile, PROFILES)
        check_ranges(self, ("iterations", "batch_size", "n_critic", "log_every",
                            "eval_samples", "z_dim", "stop_window"))
        resolve_options(self.method, self.options)
        if self.stop_rule and not {"dual_gap", "objective_L"} <= set(get_method(self.method).LOGS):
            raise ValueError(f"method {self.method!r} has no option 'stop_rule': Algorithm 1's "
                             "stopping rule needs the duality gap and L, which only iwgan logs")

    @property
    def run_id(self) -> str:
        return f"{self.profile}-{self.preset}-{self.mixture}-{self.method}-seed{self.seed}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def check_ranges(cfg, positive_ints) -> None:
    """The checks every config shares: the named integers are positive, the seed is
    non-negative, the learning rate and the width multiplier are positive."""
    for name in positive_ints:
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{name} must be a positive integer, got {getattr(cfg, name)}")
    if cfg.seed < 0:
        raise ValueError(f"seed must be non-negative, got {cfg.seed}")
    for name in ("lr", "width"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(cfg, name)}")


def check_choice(kind: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; valid choices: {', '.join(choices)}")


# Profiles: budgets and widths.
# "paper": the converged reference (Appendix D1 widths, Adam 1e-4, batch 256, 5 + 5
#   steps, 20k iterations), meant for a GPU.
# "quick": the 15-minute CPU budget of the full grid. Tuning on the literature grid
#   (iWGAN, ~25 s a run) found batch 64 / lr 1e-3 / 2 + 2 steps best in W1 and HQ per
#   second among batch 128 / lr 5e-4 with 1 or 2 critic steps and batch 64 / lr 1e-3 with
#   1 step; its numbers are not converged (the report measures how far from "long").
# "long": "quick" with a 5x budget, run on a few cells to measure that distance.
# "tiny": for tests and CI smoke runs only.
# "regression": the metric-drift check (iwgan.regression, docs/reproducibility.md): the
#   quick profile's networks and settings for 300 iterations, one thread, so that a run
#   is bit-for-bit reproducible on CPU and the whole check takes about a minute;
#   deterministic kernels, which cost nothing measurable on CPU
#   (results/benchmarks/determinism_cost.json) and make a CUDA run repeatable too.
PROFILES: dict[str, dict] = {
    "paper": dict(width=1.0, iterations=20_000, batch_size=256, lr=1e-4, n_critic=5),
    "quick": dict(width=0.25, iterations=1_500, batch_size=64, lr=1e-3, n_critic=2,
                  threads=1),
    "long": dict(width=0.25, iterations=7_500, batch_size=64, lr=1e-3, n_critic=2,
                 threads=1),
    "tiny": dict(width=0.05, iterations=6, batch_size=32, lr=1e-3, n_critic=2, log_every=2,
                 eval_samples=300, threads=1),
    "regression": dict(width=0.25, iterations=300, batch_size=64, lr=1e-3, n_critic=2,
                       threads=1, deterministic=True),
}


def make_config(profile: str = "quick", **overrides) -> RunConfig:
    """The profile's config with ``overrides`` applied; unknown field names are refused."""
    check_choice("profile", profile, PROFILES)
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
    values = {**PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}}
    return RunConfig(profile=profile, **values)
