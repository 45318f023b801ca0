"""The metric-drift check: re-run a small seeded subset of every experiment kind and compare
its metrics with the committed references, one explicit tolerance per metric.

    python -m iwgan regression            # drift table, reports/regression.md; exit 1 on drift
    python -m iwgan regression --update   # re-run, show the drift, rewrite the references

Each experiment kind registers a :class:`Subset` in :data:`SUBSETS`: the configs it re-runs,
the experiment that runs them (iwgan.experiments.skeleton: the very path of its command,
executors included) and one :class:`MetricSpec` per metric. The check reads every metric
back from the run directory (``metrics.json``, ``manifest.json``), so a reference is
traceable to a manifest like any committed result. References live in
``results/regression/reference.csv``, one row per (kind, case, metric), with the commit
and the environment that produced them.

Two tolerance regimes (docs/reproducibility.md justifies the numbers):

- **same build**: the references were made with the same torch build, CPU instruction set
  (``torch.backends.cpu.get_cpu_capability()``), machine architecture and device. A seeded
  CPU run with one thread is then bit-for-bit reproducible, so every metric must agree to
  1e-9 relative (1e-12 absolute near zero): exact up to last-bit differences that another
  numpy/scipy/POT could introduce in the metric code's float64 sums. Any real change in
  the code that trains or scores moves them by far more.
- **other build** (another torch, a GPU, a CPU with another vector unit): the float
  trajectory differs from the first step, and after a few hundred iterations it is as
  far from the reference as another seed. Each metric then gets a band measured as the
  seed-to-seed spread of the same subset; it catches gross breakage only. For a full
  check on such a machine, make references there from a trusted commit (``--update``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from iwgan.data.mixtures import MIXTURES
from iwgan.engine.config import make_config, make_image_config
from iwgan.engine.records import ResultsError, git_state
from iwgan.experiments.common import positive_int
from iwgan.experiments.convergence import Convergence, ConvergenceOptions
from iwgan.experiments.images import Images
from iwgan.experiments.mode_coverage import ModeCoverage
from iwgan.experiments.skeleton import Experiment, run_experiment
from iwgan.files import atomic_write_text

REFERENCE_SCHEMA = 2
REFERENCE = Path("results") / "regression" / "reference.csv"
REPORT = Path("reports") / "regression.md"
RUNS = Path("runs") / "regression"

# What makes two environments the "same build": everything that changes torch's float
# results for a seeded one-thread run.
FINGERPRINT = ("torch", "cpu_capability", "cpu_model", "machine", "device")
PROVENANCE = ("commit", "dirty", "config_hash", "numpy", "scipy", "pot", "python", "platform",
              "threads", "deterministic")
REFERENCE_COLUMNS = ["schema_version", "kind", "case", "metric", "value", *FINGERPRINT,
                     *PROVENANCE]
MANIFEST_KEYS = ("commit", "dirty", "packages", "python", "platform", "cpu_capability",
                 "cpu_model", "device", "threads", "deterministic", "config", "config_hash",
                 "seed", "command", "started")


@dataclass(frozen=True)
class Tolerance:
    """|new - reference| <= abs + rel * |reference|; NaN matches NaN only, unless
    ``undefined`` allows a NaN on either side (a metric that is undefined for some runs
    within the band, such as KL without high-quality samples)."""

    abs: float = 0.0
    rel: float = 0.0
    undefined: bool = False

    def allows(self, reference: float, new: float) -> bool:
        if math.isnan(reference) or math.isnan(new):
            return self.undefined or (math.isnan(reference) and math.isnan(new))
        return abs(new - reference) <= self.abs + self.rel * abs(reference)

    def __str__(self) -> str:
        parts = ([f"{self.rel:g} rel"] if self.rel else []) + ([f"{self.abs:g} abs"]
                                                               if self.abs else [])
        return (" + ".join(parts) or "equal") + (" or undefined" if self.undefined else "")


# Same build: exact up to the last bits of a float64 sum in the metric code.
EXACT = Tolerance(abs=1e-12, rel=1e-9)


@dataclass(frozen=True)
class MetricSpec:
    same: Tolerance     # same build as the references
    other: Tolerance    # anything else: a band, as wide as another seed


@dataclass(frozen=True)
class Subset:
    """One experiment kind's share of the check: its cases run by ``experiment(root)`` on
    the experiment's own grid path, into ``root``."""

    kind: str                                   # the experiment kind (results/<kind>.csv)
    configs: tuple                              # one case per config, named by its run_id
    metrics: dict[str, MetricSpec]              # what is compared, with its tolerances
    experiment: Callable[[Path], Experiment]    # the experiment that runs the cases
    stack: str = "off"                          # its units: single runs, or stacked
    interrupt_at: int | None = None             # runs killed after this iteration, resumed

    def run(self, root: Path, jobs: int, configs=None) -> None:
        """Run the cases (or ``configs`` of them) afresh into ``root``: nothing of an
        earlier check is skipped or resumed, but the cases that this subset interrupts
        are resumed from their checkpoint, as a killed run is."""
        experiment = self.experiment(root)
        shutil.rmtree(root / "results", ignore_errors=True)
        configs = list(self.configs if configs is None else configs)
        if self.interrupt_at is not None:
            run_experiment(experiment, configs, jobs=jobs, stack=self.stack,
                           stop_after=self.interrupt_at)
        run_experiment(experiment, configs, jobs=jobs, stack=self.stack,
                       resume=self.interrupt_at is not None)

    def run_path(self, root: Path, cfg) -> Path:
        return self.experiment(root).run_path(cfg.run_id)


# Mode coverage. Bands: 1.5 x the largest difference between two seeds (0, 1, 2) of the
# same cell over the 12 cells of the subset (36 ordered pairs of a cell's seeds; 27 for
# the encoder metrics), measured on this suite's CPU machine: another build is as far
# from the reference as another seed. Counts and percentages get absolute bands; W1 and
# the encoder metrics, positive and of a scale that varies from cell to cell, relative
# ones (|a - b| / |a|). At 300 iterations the runs are far from converged (BiGAN above
# all), so the bands are wide and catch gross breakage only (a diverged run, a collapse,
# the MMD term dropped); docs/reproducibility.md has the measurements.
MODE_COVERAGE_METRICS = {
    "modes": MetricSpec(EXACT, Tolerance(abs=14)),          # measured max 9 (spiral, BiGAN)
    "hq_pct": MetricSpec(EXACT, Tolerance(abs=10.0)),       # 6.28 (spiral, iWGAN)
    # KL is undefined (NaN) for a run without high-quality samples, which a run near 0 %
    # HQ can be on one build and not on another: hq_pct's band holds it then.
    "kl": MetricSpec(EXACT, Tolerance(abs=2.8, undefined=True)),  # 1.82 (ring, iWGAN)
    "w1": MetricSpec(EXACT, Tolerance(rel=2.5)),            # 1.63 x (ring, iWGAN)
    "recon_error": MetricSpec(EXACT, Tolerance(rel=3.3)),   # 2.21 x (grid, BiGAN)
    "latent_mmd": MetricSpec(EXACT, Tolerance(rel=2.0)),    # 1.35 x (ring, alpha-GAN)
}


# The methods the mode-coverage subsets re-run: one of each kind of training loop (primal-
# dual, critic loop with a gradient penalty, 1:1 joint discriminator, code discriminator).
# ALI is BiGAN's very losses with a reparameterised draw (baselines/ali.py), the GAN the
# same 1:1 loop without an encoder; adding them would make the check half as long again.
REGRESSION_METHODS = ("iwgan", "wgan_gp", "bigan", "alpha_gan")


def mode_coverage_subset(profile: str = "regression", methods=REGRESSION_METHODS,
                         mixtures=MIXTURES, preset: str = "paper", seeds=(0,)) -> Subset:
    """Every method x every mixture, paper preset, seed 0: 12 runs of 300 iterations."""
    configs = tuple(make_config(profile, method=m, mixture=x, preset=preset, seed=s)
                    for x in mixtures for m in methods for s in seeds)
    return Subset("mode_coverage", configs, MODE_COVERAGE_METRICS, ModeCoverage)


def stacked_subset(profile: str = "regression", methods=REGRESSION_METHODS) -> Subset:
    """The stacked path the sessions take by default on CPU (iwgan.engine.stacking): per
    method one model of four members that differ in seed (0, 1) and mixture (RING, GRID;
    paper preset); 16 runs. Its bands are the mode-coverage ones (another build is as far
    as another seed)."""
    configs = tuple(make_config(profile, method=m, mixture=x, preset="paper", seed=s)
                    for m in methods for x in ("ring", "grid") for s in (0, 1))
    return Subset("mode_coverage_stacked", configs, MODE_COVERAGE_METRICS, ModeCoverage,
                  stack="on")


# Bands of the convergence and digits subsets: 1.5 x the largest difference between two
# of seeds 0, 1, 2 of the same case (absolute, or relative |a - b| / |a|, as each metric
# reads), measured by `benchmarks/regression_bands.py` on this suite's CPU machine.
# results/regression/bands.json has the measured differences.
BANDS = {"dual_gap_final": 2.36, "curve_w1_final": 1.40, "final_hq_pct": 0.96,
         "auroc": 0.52, "hdr_coverage": 0.013, "quality_inlier": 0.55, "fd": 0.55,
         "digits_recon_error": 0.16, "digits_latent_mmd": 0.094}

# The convergence experiment: the eq. (4) gap, the W1 curve, the latent tests and the
# quality score of iWGAN and WGAN-GP on RING (regression profile, 300 iterations,
# evaluated every 100). Bands: 1.5 x the largest difference between two of seeds 0, 1, 2
# (docs/reproducibility.md has the measurements).
CONVERGENCE_OPTIONS = ConvergenceOptions(eval_every=100, gap_steps=5, gap_samples=300,
                                         w1_samples=300, decomposition_samples=200)
CONVERGENCE_METRICS = {
    "dual_gap_final": MetricSpec(EXACT, Tolerance(abs=BANDS["dual_gap_final"])),
    "curve_w1_final": MetricSpec(EXACT, Tolerance(rel=BANDS["curve_w1_final"])),
    # In [-1, 1], and two seeds differed by 1.6: pinned by the same build only.
    "spearman_dual_gap": MetricSpec(EXACT, Tolerance(abs=2.4)),
    "final_hq_pct": MetricSpec(EXACT, Tolerance(abs=BANDS["final_hq_pct"])),
    "auroc": MetricSpec(EXACT, Tolerance(abs=BANDS["auroc"])),
    "hdr_coverage": MetricSpec(EXACT, Tolerance(abs=BANDS["hdr_coverage"])),
    "quality_inlier": MetricSpec(EXACT, Tolerance(rel=BANDS["quality_inlier"])),
}


def convergence_subset(profile: str = "regression", methods=("iwgan", "wgan_gp"),
                       seeds=(0,)) -> Subset:
    """iWGAN and WGAN-GP on RING (paper preset), seed 0, evaluated as the convergence
    experiment evaluates (every iteration logged): 2 runs."""
    configs = tuple(dataclasses.replace(make_config(profile, method=m, mixture="ring",
                                                    preset="paper", seed=s), log_every=1)
                    for m in methods for s in seeds)
    return Subset("convergence", configs, CONVERGENCE_METRICS, convergence_experiment)


def convergence_experiment(root: Path) -> Convergence:
    return Convergence(root, CONVERGENCE_OPTIONS)


# The image pipeline on the offline digits: training through a kill and a resume from the
# checkpoint (the run stops half-way, as a kill after a checkpoint leaves it, and is
# resumed), FD-digitsCNN, the reconstruction error and the latent MMD. Bands as above.
DIGITS_METRICS = {
    "fd": MetricSpec(EXACT, Tolerance(rel=BANDS["fd"])),
    "recon_error": MetricSpec(EXACT, Tolerance(rel=BANDS["digits_recon_error"])),
    "latent_mmd": MetricSpec(EXACT, Tolerance(rel=BANDS["digits_latent_mmd"])),
    "resumed_from": MetricSpec(EXACT, EXACT),
}


def digits_subset(methods=("iwgan", "wgan_gp"), seeds=(0,)) -> Subset:
    """iWGAN and WGAN-GP on the digits, the smoke networks for 8 iterations (checkpoints
    every 2), deterministic kernels: 2 runs."""
    configs = tuple(make_image_config("digits", "smoke", method=m, seed=s, iterations=8,
                                      checkpoint_every=2, sample_every=8, log_every=2,
                                      deterministic=True)
                    for m in methods for s in seeds)
    return Subset("digits", configs, DIGITS_METRICS, digits_experiment,
                  interrupt_at=configs[0].iterations // 2)   # "killed" half-way, resumed


def digits_experiment(root: Path) -> Images:
    return Images(root, cache_dir=root / "cache")


# kind -> factory of its subset. A new experiment kind adds one entry; the check, the
# references and the report need no other change.
SUBSETS: dict[str, Callable[[], Subset]] = {
    "mode_coverage": mode_coverage_subset,
    "mode_coverage_stacked": stacked_subset,
    "convergence": convergence_subset,
    "digits": digits_subset,
}


# --- Reading run directories and references -------------------------------------------

def load_run(path: Path) -> tuple[dict, dict]:
    """(manifest, metrics) of a run directory; a missing or incomplete record is an error
    naming the file."""
    path = Path(path)
    out = []
    for name, what in (("manifest.json", "manifest"), ("metrics.json", "metrics")):
        f = path / name
        if not f.exists():
            raise ResultsError(f"{f}: missing {what}; the run directory is incomplete (an "
                               "interrupted or foreign run): re-run it")
        try:
            out.append(json.loads(f.read_text()))
        except json.JSONDecodeError as err:
            raise ResultsError(f"{f}: not valid JSON ({err}); re-run the run") from err
    manifest, metrics = out
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ResultsError(f"{path / 'manifest.json'}: missing field(s) {missing}; the "
                           "manifest is from an older version of the suite: re-run the run")
    return manifest, metrics


def environment(manifest: dict) -> dict:
    """The fingerprint and provenance of one run, as reference columns."""
    packages = manifest["packages"]
    return {"torch": torch.__version__, "cpu_capability": manifest["cpu_capability"],
            "cpu_model": manifest["cpu_model"], "machine": platform.machine(),
            "device": manifest["device"],
            "commit": manifest["commit"], "dirty": manifest["dirty"],
            "config_hash": manifest["config_hash"], "numpy": packages.get("numpy"),
            "scipy": packages.get("scipy"), "pot": packages.get("pot"),
            "python": manifest["python"], "platform": manifest["platform"],
            "threads": manifest["threads"],
            "deterministic": manifest["deterministic"]["use_deterministic_algorithms"]}


def read_references(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise ResultsError(f"{path}: no references; make them with "
                           "`python -m iwgan regression --update` (docs/reproducibility.md)")
    # Last-bit parsing differences between pandas versions are far inside the 1e-9 tolerance.
    df = pd.read_csv(path, dtype={"value": float})
    missing = [c for c in REFERENCE_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: missing column(s) {missing}; the file is from an older "
                           "or foreign schema: rewrite it with `python -m iwgan regression "
                           "--update`")
    versions = set(df["schema_version"].unique())
    if versions != {REFERENCE_SCHEMA}:
        raise ResultsError(f"{path}: schema version(s) {sorted(versions)}, this suite reads "
                           f"version {REFERENCE_SCHEMA}: rewrite it with `python -m iwgan "
                           "regression --update`")
    dup = df[df.duplicated(["kind", "case", "metric", *FINGERPRINT], keep=False)]
    if len(dup):
        raise ResultsError(f"{path}: duplicate reference(s) for "
                           f"{sorted(set(zip(dup.case, dup.metric)))}")
    return df


def build_of(df: pd.DataFrame) -> pd.Series:
    """Each row's build: its FINGERPRINT as a tuple of strings."""
    return df[list(FINGERPRINT)].astype(str).apply(tuple, axis=1)


def for_build(refs: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """The references to hold ``new`` to, per kind: those made on its build where the file
    has them (an exact check), else those of the kind's first build in the file (bands).
    The file keeps one set of references per build that made some, since seeded CPU runs
    are exact on one build only and drift apart on another (docs/reproducibility.md)."""
    mine, parts = set(build_of(new)), []
    for _, g in refs.groupby("kind", sort=False):
        build = build_of(g)
        match = build.isin(mine)
        parts.append(g[match] if match.any() else g[build == build.iloc[0]])
    return pd.concat(parts)


def check_coverage(refs: pd.DataFrame, subsets: list[Subset], path: Path,
                   all_kinds: bool) -> None:
    """Refuse, before anything runs, references that do not match the subsets one to one."""
    kinds = {s.kind for s in subsets}
    if all_kinds:
        unknown = sorted(set(refs.kind) - kinds)
        if unknown:
            raise ResultsError(f"{path}: reference kind(s) {unknown} have no regression "
                               f"subset (known: {sorted(SUBSETS)}); rewrite the references "
                               "with `python -m iwgan regression --update`")
    for s in subsets:
        ref = refs[refs.kind == s.kind]
        have = {c.run_id for c in s.configs}
        orphans = sorted(set(ref.case) - have)
        if orphans:
            raise ResultsError(f"{path}: reference case(s) {orphans} of kind {s.kind!r} have "
                               "no matching new run in the regression subset; rewrite the "
                               "references with `python -m iwgan regression --update`")
        absent = sorted(have - set(ref.case))
        if absent:
            raise ResultsError(f"{path}: no reference for case(s) {absent} of kind "
                               f"{s.kind!r}; make them with `python -m iwgan regression "
                               "--update`")
        for case, g in ref.groupby("case"):
            if set(g.metric) != set(s.metrics):
                raise ResultsError(f"{path}: case {case!r} has metrics {sorted(g.metric)}, "
                                   f"the subset compares {sorted(s.metrics)}; rewrite the "
                                   "references with `python -m iwgan regression --update`")


# --- Running and comparing -------------------------------------------------------------

def collect(subset: Subset, runs_root: Path) -> pd.DataFrame:
    """Long table of the subset's new metrics, read back from its run directories."""
    rows = []
    for cfg in subset.configs:
        manifest, metrics = load_run(subset.run_path(runs_root, cfg))
        env = environment(manifest)
        for name in subset.metrics:
            if name not in metrics:
                raise ResultsError(f"{subset.run_path(runs_root, cfg)}/metrics.json: "
                                   f"no metric {name!r}")
            value = metrics[name]
            rows.append({"schema_version": REFERENCE_SCHEMA, "kind": subset.kind,
                         "case": cfg.run_id, "metric": name,
                         "value": float("nan") if value is None else float(value), **env})
    return pd.DataFrame(rows, columns=REFERENCE_COLUMNS)


def fmt(value) -> str:
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "nan"
    return f"{value:.12g}"


def compare(refs: pd.DataFrame | None, new: pd.DataFrame, subsets: list[Subset]) -> list[dict]:
    """The drift table: per case, its config hash, then one row per metric."""
    specs = {s.kind: s.metrics for s in subsets}
    by_case = {} if refs is None else {k: g for k, g in refs.groupby(["kind", "case"])}
    rows = []
    for (kind, case), g in new.groupby(["kind", "case"], sort=False):
        ref = by_case.pop((kind, case), None)
        if ref is None:
            rows += [dict(kind=kind, case=case, metric=r.metric, reference="–",
                          new=fmt(r.value), tolerance="–", verdict="NO REFERENCE")
                     for r in g.itertuples(index=False)]
            continue
        now, then = g.iloc[0], ref.iloc[0]
        same = all(str(now[k]) == str(then[k]) for k in FINGERPRINT)
        rows.append(dict(kind=kind, case=case, metric="config_hash",
                         reference=then.config_hash, new=now.config_hash, tolerance="equal",
                         verdict="ok" if then.config_hash == now.config_hash else "DRIFT"))
        values = dict(zip(ref.metric, ref.value))
        for r in g.itertuples(index=False):
            spec = specs[kind][r.metric]
            tol = spec.same if same else spec.other
            if r.metric not in values:
                rows.append(dict(kind=kind, case=case, metric=r.metric, reference="–",
                                 new=fmt(r.value), tolerance="–", verdict="NO REFERENCE"))
                continue
            rows.append(dict(kind=kind, case=case, metric=r.metric,
                             reference=fmt(values[r.metric]), new=fmt(r.value),
                             tolerance=str(tol) + ("" if same else " (band)"),
                             verdict="ok" if tol.allows(values[r.metric], r.value)
                             else "DRIFT"))
    for (kind, case), ref in by_case.items():
        if kind in specs:   # a reference whose case this subset no longer runs
            rows += [dict(kind=kind, case=case, metric=r.metric, reference=fmt(r.value),
                          new="–", tolerance="–", verdict="NO NEW RUN")
                     for r in ref.itertuples(index=False)]
    return rows


def markdown_table(rows: list[dict]) -> str:
    cols = ["kind", "case", "metric", "reference", "new", "tolerance", "verdict"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def describe(env: pd.DataFrame) -> str:
    first = env.iloc[0]
    return (f"torch {first.torch}, CPU capability {first.cpu_capability}, "
            f"{first.cpu_model}, {first.machine}, device {first.device}, numpy {first.numpy}, "
            f"{first.threads} thread(s), deterministic={first.deterministic}")


def regime(refs: pd.DataFrame, new: pd.DataFrame) -> str:
    a = refs[list(FINGERPRINT)].astype(str).drop_duplicates()
    b = new[list(FINGERPRINT)].astype(str).drop_duplicates()
    if len(a) == 1 and len(b) == 1 and a.iloc[0].equals(b.iloc[0]):
        return ("**same build** as the references: every metric must agree to 1e-9 "
                "relative (exact up to float64 summation order)")
    return ("**another build** than the references (torch, CPU capability, machine or "
            "device differ): metrics are held to seed-to-seed bands, which catch gross "
            "breakage only; for a full check make references on this machine from a "
            "trusted commit")


def report_text(rows: list[dict], refs: pd.DataFrame, new: pd.DataFrame) -> str:
    drifted = [r for r in rows if r["verdict"] != "ok"]
    verdict = (f"**PASS**: all {len(rows)} comparisons within tolerance." if not drifted else
               f"**FAIL**: {len(drifted)} of {len(rows)} comparisons drifted.")
    commits = ", ".join(f"`{str(c)[:10]}`" + (" (uncommitted changes)" if str(d) == "True"
                                               else "")
                        for c, d in sorted(set(zip(refs.commit, refs.dirty.astype(str)))))
    kinds = ", ".join(f"`{k}` ({len(set(g.case))} runs)" for k, g in new.groupby("kind"))
    return "\n".join([
        "# Metric regression check", "",
        "Written by `nox -s regression` (`python -m iwgan regression`); do not edit. It "
        "re-runs a small seeded subset of every experiment kind and compares each metric "
        f"with the committed references in `{REFERENCE.as_posix()}`. Tolerances and how to "
        "update the references: `docs/reproducibility.md`.", "",
        verdict, "",
        f"- Subsets: {kinds}.",
        f"- References: made at commit {commits} with {describe(refs)}.",
        f"- This run: {describe(new)}; its run directories (manifests, logs, samples) are "
        f"under `{RUNS.as_posix()}/`.",
        f"- Regime: {regime(refs, new)}.", "",
        markdown_table(rows), ""])


def run_regression(out: Path = Path("."), update: bool = False, kinds=None, jobs: int = 1,
                   subsets: list[Subset] | None = None) -> int:
    """Run the check (or ``update`` the references); 0 when nothing drifted, else 1.

    ``subsets`` replaces the registered ones (tests use tiny ones). With ``jobs`` > 1 the
    runs go to worker processes, so in-process patches do not reach them.
    """
    out = Path(out)
    all_kinds = subsets is None and not kinds
    if subsets is None:
        subsets = [SUBSETS[k]() for k in (kinds or SUBSETS)]
    ref_path, report_path, runs_root = out / REFERENCE, out / REPORT, out / RUNS
    refs = None
    if update:
        if ref_path.exists():
            try:
                refs = read_references(ref_path)
            except ResultsError as err:
                if not all_kinds:   # the other kinds' references would be lost
                    raise
                print(f"warning: {err}; rewriting it whole")
    else:
        refs = read_references(ref_path)
        check_coverage(refs, subsets, ref_path, all_kinds)
    commit = git_state()
    print(f"regression: {sum(len(s.configs) for s in subsets)} runs of "
          f"{', '.join(s.kind for s in subsets)} at commit {commit['commit'][:10]}"
          + (" (uncommitted changes)" if commit["dirty"] else ""), flush=True)
    start = time.perf_counter()
    for s in subsets:
        s.run(runs_root / s.kind, jobs)
    new = pd.concat([collect(s, runs_root / s.kind) for s in subsets], ignore_index=True)
    wall = time.perf_counter() - start
    used = None if refs is None else for_build(refs, new)
    rows = compare(used, new, subsets)
    if update:
        if refs is not None:
            print("Drift of the new run against the old references (being replaced):")
            print(markdown_table(rows))
            # This build's references of the re-run kinds are replaced (and, on a run of
            # every kind, kinds no longer run are dropped); other builds' are kept.
            mine = build_of(refs).isin(set(build_of(new)))
            drop = (mine & refs.kind.isin(new.kind)) | (all_kinds & ~refs.kind.isin(new.kind))
            merged = pd.concat([refs[~drop], new], ignore_index=True)
        else:
            merged = new
        atomic_write_text(ref_path, merged.to_csv(index=False))
        refs = merged
        print(f"references rewritten: {ref_path}")
        used = for_build(refs, new)
        rows = compare(used, new, subsets)
    text = report_text(rows, used[used.kind.isin(new.kind)], new)
    atomic_write_text(report_path, text)
    print(text)
    runs = len(new[["kind", "case"]].drop_duplicates())
    print(f"report: {report_path}; {runs} runs in {wall:.0f} s")
    return 0 if all(r["verdict"] == "ok" for r in rows) else 1


# --- Command line ----------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--update", action="store_true",
                   help="re-run, show the drift, then rewrite the references (commit them)")
    p.add_argument("--kinds", nargs="+", choices=list(SUBSETS), metavar="KIND",
                   help=f"experiment kinds to check (default: all of {list(SUBSETS)})")
    p.add_argument("--jobs", type=positive_int, default=2,
                   help="parallel processes (default 2)")
    p.add_argument("--out", type=Path, default=Path("."),
                   help="root of results/, reports/ and runs/ (default: .)")


def command(args) -> int:
    return run_regression(args.out, update=args.update, kinds=args.kinds, jobs=args.jobs)
