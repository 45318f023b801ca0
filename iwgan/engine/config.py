"""One config family: a typed config per run, named profiles, strict overrides.

:class:`TrainConfig` holds what every run shares (the method, its networks, the optimiser,
the schedule, the device); :class:`MixtureConfig` adds a mixture run's data and
evaluation, :class:`ImageConfig` an image run's. A profile fixes the budget and the
network width; any field can then be overridden by name, and unknown names are refused.

A run's identity is its ``run_id``: the profile and the cell (method, data, seed), plus a
short hash of every field that differs from the profile's values when one does (an
``--iterations`` override is another run, never a replacement of the profile's), except
the fields that only say how a run is executed or written down (:data:`EXECUTION`, which
the manifest records). A setting the run's method does not read (iwgan.core.methods:
USES and SHARED_SETTINGS; n_critic for the GAN, ALI, BiGAN and alpha-GAN, which have no
critic loop) keeps the profile's value, and a method option at its default is left out,
so that neither can give two runs that train alike two names.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass, field

import torch

from iwgan.core.methods import SHARED_SETTINGS, get_method
from iwgan.data.datasets import DATASETS
from iwgan.data.mixtures import MIXTURES, PRESETS
from iwgan.engine.optim import ADAM_IMPLS

DEVICE_KINDS = ("cpu", "cuda")
MAX_SEED = 2**63 - 1   # torch takes 64-bit seeds; results tables hold them as int64
PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("constant", "linear", "step")
# How a run's recipe was chosen (docs/tuning.md): "identical", the paper's comparison (every
# method at its profile's one recipe), or "tuned", each method at the recipe an equal-budget
# search selected (iwgan.experiments.tuning). Part of a run's identity.
PROTOCOLS = ("identical", "tuned")


def lr_factor(schedule: str, iteration: int, total: int) -> float:
    """The multiplier on the learning rate at ``iteration`` of ``total``: 1 (constant);
    linear: decays to 0 at the last iteration; step: 1, then a tenth from half-way on, so
    that the last half trains at a fixed small rate and a plateau there is a plateau of
    the model, not of a rate decaying to 0."""
    if schedule == "linear":
        return max(0.0, 1.0 - iteration / total)
    if schedule == "step":
        return 1.0 if iteration < total // 2 else 0.1
    return 1.0
IMAGE_METRICS = ("fid", "fd-cnn")
# Evaluations on the way a run records by default, for the plateau rule
# (iwgan.metrics.plateau: 4 of them then fall in the last quarter).
CURVE_POINTS = 16
# Fields that change how a run executes or what it writes down, not its numbers' meaning.
EXECUTION = ("device", "threads", "log_every", "checkpoint_every", "sample_every", "adam")
# The logged values Algorithm 1's stopping rule reads (iwgan.core.duality_gap.stop_rule_met).
STOP_RULE_LOGS = ("dual_gap", "objective_L")
# Fields added after results were committed, with the value that means "as before".
LATER_FIELDS = {"ema": 0.0, "curve_points": CURVE_POINTS, "adam": "torch",
                "protocol": "identical"}


@dataclass(frozen=True)
class TrainConfig:
    """What every run shares. Subclasses add their data and evaluation."""

    method: str = "iwgan"
    seed: int = 0
    profile: str = "quick"
    arch: str = "mixture"          # architecture preset of iwgan.core.networks
    width: float = 1.0             # multiplier on every hidden size; 1 = the paper's
    z_dim: int = 5
    iterations: int = 20_000       # outer iterations of Algorithm 1
    batch_size: int = 256
    lr: float = 1e-4
    lr_schedule: str = "constant"  # "linear" or "step": see lr_factor
    beta1: float = 0.5
    beta2: float = 0.9
    n_critic: int = 5              # critic steps per outer iteration
    lambda_gp: float = 5.0         # gradient-penalty weight (lambda_1 in Algorithm 1)
    lambda_mmd: float = 10.0       # MMD weight (lambda_2 in Algorithm 1)
    ema: float = 0.0               # decay of a moving average of G's and Q's weights, which
                                   # every evaluation and the results use (0: none)
    curve_points: int = CURVE_POINTS  # evaluations on the way, for the plateau rule
    log_every: int = 50            # iterations between JSON-lines log records
    checkpoint_every: int = 0      # iterations between checkpoints (0: only at the end)
    threads: int = 0               # torch CPU threads; 0 = leave torch's default
    deterministic: bool = False    # torch.use_deterministic_algorithms + cuDNN flags
    device: str = "cpu"            # cpu, cuda or cuda:N (iwgan.engine.devices)
    precision: str = "fp32"        # "bf16": autocast on CUDA (fp32 on CPU, recorded)
    channels_last: bool = False    # CUDA only (ignored on CPU, recorded)
    adam: str = "torch"            # Adam's arithmetic: "torch" (torch.optim.Adam's for-loop)
                                   # or "fused" (its fused kernel: ~5x faster on a stack's
                                   # parameters, other rounding; iwgan.engine.optim)
    options: dict = field(default_factory=dict)  # method-specific options (see methods)
    protocol: str = "identical"    # how the recipe was chosen: PROTOCOLS (docs/tuning.md)

    POSITIVE = ("iterations", "batch_size", "n_critic", "log_every", "z_dim", "curve_points")
    POSITIVE_REALS = ("lr", "width")
    # Counts a metric or a loss cannot use below a least value, and why.
    AT_LEAST = {"batch_size": 2}
    AT_LEAST_WHY = {"batch_size": "a batch of one has no spread (the MMD penalty divides by "
                    "n(n - 1), batch norm by the batch's variance)"}

    def __post_init__(self):
        method = get_method(self.method)       # one line on an unknown or broken method
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("protocol", self.protocol, PROTOCOLS)
        check_choice("adam", self.adam, ADAM_IMPLS)
        check_device_name(self.device)
        for name in self.POSITIVE:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, least in self.AT_LEAST.items():
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be at least {least}, got {getattr(self, name)}: "
                                 f"{self.AT_LEAST_WHY[name]}")
        for name in ("seed", "checkpoint_every", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.seed > MAX_SEED:
            raise ValueError(f"seed {self.seed} is out of range: seeds are 0 to {MAX_SEED} "
                             "(64-bit, as torch and the results tables take them)")
        self._check_reals(("ema",), lambda v: 0 <= v < 1, "a decay in [0, 1) (0: no average)")
        self._check_reals(("beta1", "beta2"), lambda v: 0 <= v < 1,
                          "in [0, 1) (Adam's decay rates)")
        self._check_reals(self.POSITIVE_REALS, lambda v: v > 0, "a positive finite number")
        self._check_reals(("lambda_gp", "lambda_mmd"), lambda v: v >= 0,
                          "a finite weight >= 0 (0 turns the term off)")
        if not isinstance(self.options, dict):
            raise ValueError(f"options must be a dict of the method's options, got "
                             f"{self.options!r}")
        object.__setattr__(self, "options", method.given_options(self.options))
        profile = self.profile_settings()
        for name in SHARED_SETTINGS:
            if name not in method.uses:     # it cannot change what the method trains
                default = next(f.default for f in dataclasses.fields(self) if f.name == name)
                object.__setattr__(self, name, profile.get(name, default))

    @functools.cached_property
    def method_options(self) -> dict:
        """Every option of the method: the value ``options`` gives, else its default
        (checked when the config was made)."""
        return get_method(self.method).resolve_options(self.options)

    def profile_settings(self) -> dict:
        """The settings the run's profile fixes (subclasses); an unknown profile is an
        error."""
        raise NotImplementedError

    def _check_reals(self, names, within, what: str) -> None:
        """Each field of ``names`` a finite number (int or float) ``within`` its range."""
        for name in names:
            value = getattr(self, name)
            if not (_real(value) and within(value)):
                raise ValueError(f"{name} must be {what}, got {value!r}")

    def identity(self) -> str:
        """The cell of the run, without the profile and the seed (subclasses)."""
        raise NotImplementedError

    @property
    def run_id(self) -> str:
        # a tuned run is named so, and its protocol is among its hashed overrides: it never
        # takes the id of an identical run; an identical run's id is as it always was
        profile = self.profile if self.protocol == "identical" else \
            f"{self.profile}-{self.protocol}"
        base = cell_id(profile, self.identity(), self.method, self.seed)
        changed = self.overrides()
        return base if not changed else f"{base}-{_digest(changed)[:8]}"

    def overrides(self) -> dict:
        """The fields (other than the cell's and :data:`EXECUTION`) whose values differ
        from the profile's."""
        cell = {f: getattr(self, f) for f in self.CELL}
        default, mine = type(self).make(self.profile, **cell).to_dict(), self.to_dict()
        def value(fields, k):
            return fields.get(k, LATER_FIELDS.get(k))
        return {k: value(mine, k) for k in sorted(set(default) | set(mine))
                if k not in EXECUTION and k not in self.CELL
                and value(default, k) != value(mine, k)}

    def cell_key(self) -> str:
        """The same for every seed of one cell (and nothing else): what a report averages."""
        return dataclasses.replace(self, seed=0).hash()

    def to_dict(self) -> dict:
        """The fields by name; one of :data:`LATER_FIELDS` at its neutral value is left
        out, so that the runs recorded before it existed keep their hashes and ids."""
        values = dataclasses.asdict(self)
        return {k: v for k, v in values.items()
                if not (k in LATER_FIELDS and v == LATER_FIELDS[k])}

    def hash(self) -> str:
        return _digest(self.to_dict())[:12]


def _real(value) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def same_recipe(a: dict, b: dict) -> bool:
    """Whether the settings ``a`` (a space entry, a config's) hold every setting of the
    recipe ``b`` (floats within rounding)."""
    def equal(x, y):
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            return math.isclose(x, y, rel_tol=1e-9)
        return x == y
    return all(k in a and equal(a[k], v) for k, v in b.items())


def cell_id(profile: str, identity: str, method: str, seed: int) -> str:
    """A run id without its overrides: what a run at the profile's own settings is called,
    and what precedes the hash of the overridden settings otherwise."""
    return f"{profile}-{identity}-{method}-seed{seed}"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class MixtureConfig(TrainConfig):
    """A run on a Gaussian mixture: (method, mixture, preset, seed, profile)."""

    mixture: str = "ring"
    preset: str = "paper"          # "paper" or "literature" (see iwgan.data.mixtures)
    eval_samples: int = 2_500      # samples drawn for the final metrics
    stop_rule: bool = False        # Algorithm 1's stopping rule on the cheap estimates
    stop_gap: float = 0.05         # epsilon_1: stop when |dual gap| < this ...
    stop_loss: float = 0.05        # epsilon_2: ... and |L| < this (window means)
    stop_window: int = 100         # iterations averaged before the rule is checked

    POSITIVE = (*TrainConfig.POSITIVE, "eval_samples", "stop_window")
    AT_LEAST = {**TrainConfig.AT_LEAST, "eval_samples": 2}
    AT_LEAST_WHY = {**TrainConfig.AT_LEAST_WHY, "eval_samples": "the latent MMD, an unbiased "
                    "estimate, divides by n(n - 1)"}
    CELL = ("method", "mixture", "preset", "seed")

    def __post_init__(self):
        super().__post_init__()
        # |gap| < stop_gap and |L| < stop_loss: 0 never stops
        self._check_reals(("stop_gap", "stop_loss"), lambda v: v >= 0, "a finite threshold >= 0")
        check_choice("mixture", self.mixture, MIXTURES)
        check_choice("preset", self.preset, PRESETS)
        if self.arch != "mixture":
            raise ValueError(f"a mixture run uses the mixture networks, not {self.arch!r}")
        if self.stop_rule and not set(STOP_RULE_LOGS) <= set(get_method(self.method).logs):
            raise ValueError(f"method {self.method!r} cannot use stop_rule: Algorithm 1's "
                             f"stopping rule reads the logged {' and '.join(STOP_RULE_LOGS)}, "
                             "which this method does not log (iwgan does)")

    def profile_settings(self) -> dict:
        check_choice("profile", self.profile, PROFILES)
        return PROFILES[self.profile]

    def identity(self) -> str:
        return f"{self.preset}-{self.mixture}"

    @classmethod
    def make(cls, profile: str = "quick", **overrides) -> MixtureConfig:
        return _make(cls, PROFILES, profile, {}, overrides)


@dataclass(frozen=True)
class ImageConfig(TrainConfig):
    """A run on images (Section 5.2): (method, dataset, seed, profile)."""

    arch: str = "mnist"            # "mnist" (Appendix D2) or "celeba" (D3)
    z_dim: int = 8
    iterations: int = 10_000
    batch_size: int = 250
    checkpoint_every: int = 500
    dataset: str = "digits"        # digits, mnist or celeba (iwgan.data.datasets)
    crop: int | None = 140         # CelebA center crop in px (None: no crop)
    image_size: int = 64           # CelebA side after resizing
    max_train: int | None = None   # keep only the first N training images (smoke runs)
    metric: str = "fid"            # "fid" (Inception) or "fd-cnn" (FD-<data>CNN, offline)
    fid_samples: int = 10_000      # generated samples, and real ones for the reference
    classifier_steps: int = 400    # training steps of FD-<data>CNN's classifier (fd-cnn)
    validation_samples: int = 10_000  # validation images encoded for Figs 9, 12, 14
    eval_batch: int = 250
    sample_every: int = 500

    POSITIVE = (*TrainConfig.POSITIVE, "fid_samples", "validation_samples", "eval_batch",
                "classifier_steps", "sample_every", "image_size")
    AT_LEAST = {**TrainConfig.AT_LEAST, "fid_samples": 2, "validation_samples": 2}
    AT_LEAST_WHY = {**TrainConfig.AT_LEAST_WHY,
                    "fid_samples": "a Frechet distance needs the covariance of two samples "
                    "at least (--fid-samples)",
                    "validation_samples": "the real-vs-real floor is a Frechet distance "
                    "on them"}
    CELL = ("method", "dataset", "seed")

    def __post_init__(self):
        super().__post_init__()
        check_choice("arch", self.arch, ("mnist", "celeba"))
        check_choice("metric", self.metric, IMAGE_METRICS)
        if self.max_train is not None and self.max_train <= 0:
            raise ValueError(f"max_train must be a positive integer, got {self.max_train}")
        if not get_method(self.method).images:
            raise ValueError(f"method {self.method!r} does not train on images (it does not "
                             "declare IMAGES = True): run it on the mixtures (mode-coverage, "
                             "convergence), or declare IMAGES = True in its module once it "
                             "trains on the image networks")

    def profile_settings(self) -> dict:
        check_choice("dataset", self.dataset, DATASETS)
        check_choice(f"profile for {self.dataset}", self.profile, IMAGE_PROFILES[self.dataset])
        return {**DATASET_SETTINGS[self.dataset], **IMAGE_PROFILES[self.dataset][self.profile]}

    def identity(self) -> str:
        return self.dataset

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.arch == "celeba":
            return (3, self.image_size, self.image_size)
        return (1, 28, 28)

    @classmethod
    def make(cls, profile: str = "smoke", dataset: str = "digits", **overrides) -> ImageConfig:
        check_choice("dataset", dataset, DATASETS)
        check_choice(f"profile for {dataset}", profile, IMAGE_PROFILES[dataset])
        return _make(cls, IMAGE_PROFILES[dataset], profile, DATASET_SETTINGS[dataset],
                     {"dataset": dataset, **overrides})


def _make(cls, profiles: dict, profile: str, settings: dict, overrides: dict):
    """The profile's config with ``overrides`` (None = keep) applied; unknown field names
    are refused."""
    check_choice("profile", profile, profiles)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
    values = {**settings, **profiles[profile],
              **{k: v for k, v in overrides.items() if v is not None}}
    return cls(profile=profile, **values)


def parse_field(name: str, text: str, cls=None):
    """``text`` as the value of config field ``name`` (bool, int, float, str, or JSON for
    options); an unknown field or an unparsable value is an error naming both."""
    cls = cls or MixtureConfig
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise ValueError(f"unknown config field {name!r}; known fields: {sorted(fields)}")
    kind = field_kind(fields[name])
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if kind is dict:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError
            return value
        return kind(text)
    except ValueError:
        raise ValueError(f"config field {name!r} takes a {kind.__name__}, got {text!r}") \
            from None


def field_kind(field: dataclasses.Field) -> type:
    """The type a field's value is parsed as: its default's, or for a default of None the
    first type its annotation names ("int | None": int). Read from the class, not from an
    instance, since a default instance need not be a valid config."""
    default = field.default_factory() if field.default is dataclasses.MISSING \
        else field.default
    if default is not None:
        return type(default)
    names = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict}
    annotation = field.type if isinstance(field.type, str) else field.type.__name__
    return names[annotation.split("|")[0].strip()]


def check_choice(kind: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; valid choices: {', '.join(choices)}")


def check_device_name(name: str) -> None:
    """A device string torch can parse, of a kind the suite runs on (cpu, cuda, cuda:N);
    whether it is present is checked before a run starts (iwgan.engine.devices)."""
    try:
        kind = torch.device(name).type
    except (RuntimeError, TypeError):
        kind = None
    if kind not in DEVICE_KINDS:
        raise ValueError(f"unknown device {name!r}; valid choices: cpu, cuda, cuda:N")


# Mixture profiles: budgets and widths.
# "paper": the converged reference (Appendix D1 widths, Adam 1e-4, batch 256, 5 + 5
#   steps, 20k iterations), meant for a GPU.
# "quick": the 15-minute CPU budget of the full grid. Tuning on the literature grid
#   (iWGAN, ~25 s a run) found batch 64 / lr 1e-3 / 2 + 2 steps best in W1 and HQ per
#   second among batch 128 / lr 5e-4 with 1 or 2 critic steps and batch 64 / lr 1e-3 with
#   1 step; its numbers are not converged (the report measures how far from "long").
# "long": "quick" with a 5x budget, run on a few cells to measure that distance.
# "tiny": for tests and CI smoke runs only.
# "regression": the metric-drift check (iwgan.experiments.regression,
#   docs/reproducibility.md): the quick profile's networks and settings for 300
#   iterations, one thread, so that a run is bit-for-bit reproducible on CPU and the
#   whole check takes about a minute; deterministic kernels, which cost nothing
#   measurable on CPU (results/benchmarks/determinism_cost.json) and make a CUDA run
#   repeatable too.
PROFILES: dict[str, dict] = {
    "paper": dict(width=1.0, iterations=20_000, batch_size=256, lr=1e-4, n_critic=5),
    "quick": dict(width=0.25, iterations=1_500, batch_size=64, lr=1e-3, n_critic=2,
                  threads=1),
    "long": dict(width=0.25, iterations=7_500, batch_size=64, lr=1e-3, n_critic=2,
                 threads=1),
    # "converged": one recipe for all four methods with which they reach their plateau
    #   on the CPU (iwgan.metrics.plateau); the search and its numbers: docs/converged.md
    #   (the moving average of G and Q, ema 0.99, is its round 6).
    "converged": dict(width=0.25, iterations=5_000, batch_size=64, lr=1e-3,
                      lr_schedule="linear", n_critic=5, ema=0.99, threads=1),
    "tiny": dict(width=0.05, iterations=6, batch_size=32, lr=1e-3, n_critic=2, log_every=2,
                 eval_samples=300, threads=1),
    "regression": dict(width=0.25, iterations=300, batch_size=64, lr=1e-3, n_critic=2,
                       threads=1, deterministic=True),
}


def make_config(profile: str = "quick", **overrides) -> MixtureConfig:
    """A mixture run's config: the profile's with ``overrides`` applied."""
    return MixtureConfig.make(profile, **overrides)


# Image runs: every dataset's fixed settings, then its profiles (budgets). All but
# "smoke" and the digits "cpu" profile are GPU jobs. The paper gives Adam 1e-4 and, for
# MNIST (the authors' code), batch 250, 5 + 5 steps, lambda_MMD 10, lambda_GP 5, z_dim 8,
# a sigmoid output; CelebA's z_dim is 64 (Appendix D3). It gives no iteration budget:
# ours are stated here and in docs/images.md.
DATASET_SETTINGS = {
    "digits": dict(arch="mnist", z_dim=8, crop=None, image_size=28),
    "mnist": dict(arch="mnist", z_dim=8, crop=None, image_size=28),
    "celeba": dict(arch="celeba", z_dim=64, crop=140, image_size=64),
}
IMAGE_PROFILES: dict[str, dict[str, dict]] = {
    "digits": {
        # The MNIST settings of the paper on the 1,437 training digits.
        "paper": dict(width=1.0, iterations=10_000, batch_size=250, lr=1e-4, n_critic=5,
                      metric="fd-cnn", fid_samples=2_000),
        # The committed CPU run, at most 45 minutes on 2 shared cores for 4 methods x 1
        # seed: quarter-width D2 networks, batch 64, 2 + 2 steps, 1,000 iterations (one
        # thread: ~1.3 s per iteration of all four methods together, up to ~2.2 s when
        # the other core is busy). lr 1e-4, the paper's: at lr 1e-3 iWGAN's encoder lost
        # every unit of its last ReLU layer within 150 iterations (Q(x) std 0, G(Q(x))
        # one mean image, FD-digitsCNN 2,007 at 300 iterations), where at 1e-4 no unit
        # died (Q(x) std 0.95, FD 278); docs/images.md, results/digits_search/.
        "cpu": dict(width=0.25, iterations=1_000, batch_size=64, lr=1e-4, n_critic=2,
                    metric="fd-cnn", fid_samples=2_000, log_every=20, checkpoint_every=100,
                    sample_every=200, threads=1),
        "smoke": dict(width=0.05, iterations=4, batch_size=16, lr=5e-4, n_critic=1,
                      metric="fd-cnn", fid_samples=200, validation_samples=100,
                      classifier_steps=40,
                      log_every=2, checkpoint_every=2, sample_every=2, threads=1),
    },
    "mnist": {
        "paper": dict(width=1.0, iterations=10_000, batch_size=250, lr=1e-4, n_critic=5,
                      metric="fid", fid_samples=10_000),
        # Real MNIST on a CPU (docs/images.md, "Real MNIST on a CPU"): the digits `cpu`
        # profile's networks and rates (quarter-width D2, batch 64, 2 + 2 steps, lr 1e-4:
        # 1e-3 killed iWGAN's encoder) with round 6's moving average of G and Q (0.99),
        # 1,500 iterations and a 32-point FD curve; FD-MNISTCNN on 10k samples against the
        # 10k test images, its classifier 4,000 steps (test accuracy in the report).
        "cpu": dict(width=0.25, iterations=1_500, batch_size=64, lr=1e-4, n_critic=2,
                    ema=0.99, curve_points=32, metric="fd-cnn", fid_samples=10_000,
                    classifier_steps=4_000, log_every=20, checkpoint_every=100,
                    sample_every=250, threads=1),
        "smoke": dict(width=0.125, iterations=20, batch_size=32, lr=5e-4, n_critic=2,
                      max_train=2_000, metric="fd-cnn", fid_samples=500, classifier_steps=100,
                      validation_samples=500, log_every=5, checkpoint_every=10,
                      sample_every=10, threads=1),
    },
    "celeba": {
        "paper": dict(width=1.0, iterations=20_000, batch_size=64, lr=1e-4, n_critic=5,
                      metric="fid", fid_samples=10_000),
        "smoke": dict(width=0.125, iterations=10, batch_size=16, lr=5e-4, n_critic=1,
                      max_train=512, metric="fid", fid_samples=64, validation_samples=64,
                      eval_batch=32, log_every=5, checkpoint_every=5, sample_every=5,
                      threads=1),
    },
}


def make_image_config(dataset: str, profile: str, **overrides) -> ImageConfig:
    """An image run's config: the dataset's settings and profile with ``overrides``."""
    return ImageConfig.make(profile, dataset, **overrides)
