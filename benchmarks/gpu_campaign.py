"""The GPU campaign: the paper's own scale, measured in one prepared run on one H100/H200.

    python benchmarks/gpu_campaign.py prepare        # here: POT's and pytorch-fid's wheels
                                                     # for the GPU's Python into .whl/
    python benchmarks/gpu_campaign.py plan           # the stages and their estimated seconds
    python benchmarks/gpu_campaign.py run --wheels .whl --out /tmp/campaign \\
        --bundle $OUT/campaign.tar.gz                # on the GPU machine: at most --budget s
    python benchmarks/gpu_campaign.py merge campaign.tar.gz   # here: into results/
    python -m iwgan reports                          # here: the reports gain their GPU parts
    python benchmarks/gpu_campaign.py run --smoke --out /tmp/smoke   # the CPU smoke mode

A driver over what exists, in this order: the throughput benchmarks of benchmarks/ on
CUDA (K = 1, 4, 16 stacked members at paper width, the image networks' fast path with
each option's loss curve against eager fp32, MFU, the exact W1's cost) through
``iwgan.experiments.throughput.run_benchmarks``; then the ``paper`` profile's mode-coverage
grid through ``python -m iwgan mode-coverage``, each method one stacked model, as much of
it as fits the time left (``campaign_cost.plan_mode_coverage``, from the device's own
measurements of the first stages); then, while time is left, the other benchmarks.

Every stage runs in a process of its own with a time limit, and everything is written as
it finishes: the benchmarks into ``results/throughput/cuda-<gpu>.json`` (with this
campaign's record in its manifest) after every stage, each method's runs into
``results/mode_coverage.csv`` as its stack finishes, and ``--bundle`` (results/ and the
stages' logs, one .tar.gz) refreshed after every stage. A time-out keeps what finished.

The smoke mode (``--smoke``) runs the same stages in the same order through the same code
on the CPU, at a tiny scale, in about a minute; CI runs it (tests/benchmarks/
test_gpu_campaign.py, which also runs the CUDA-only branches with ``torch.cuda`` claimed).
docs/gpu_campaign.md: how to run it on a GPU, how long it takes and how that was estimated.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()   # the budget counts from here, before the imports

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (ROOT, HERE):    # the suite and campaign_cost, also from a copy not installed
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import campaign_cost as cc
import pandas as pd
import torch

from iwgan.core.methods import METHOD_NAMES
from iwgan.engine.devices import check_device, default_device, is_cuda
from iwgan.engine.records import (
    SOURCE_COMMIT,
    SOURCE_DIRTY,
    git_state,
    now,
    read_results,
    upsert_curves,
    upsert_results,
)
from iwgan.experiments import mode_coverage, throughput
from iwgan.experiments.common import grid_configs
from iwgan.experiments.throughput import FAST_PATH_OPTIONS, TIMED_OUT
from iwgan.files import atomic_write_bytes, update_json, write_json

RESERVE_S = 15.0        # kept back at the end: the last record and bundle
MIN_STAGE_S = 20.0      # a stage is not started with less time than this left
PLAN_MARGIN = 1.15      # the grid is planned to fit the time left / this
# The packages the GPU machine's Python lacks, as pip names them and as they import.
CARRIED = {"pot": "ot", "pytorch-fid": "pytorch_fid"}
DEFAULT_WHEELS = ROOT / ".whl"
SOURCE_FILE = "source.json"
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                   "manylinux2014_x86_64", "manylinux1_x86_64")
M = METHOD_NAMES


@dataclass(frozen=True)
class Scale:
    """What the campaign runs. Stages are (name, benchmark names with ``{d}`` for the
    device kind, seconds at most); ``stages`` run before the grid, ``extras`` after it
    while their estimates fit."""

    name: str
    budget_s: float
    stages: tuple
    extras: tuple
    grid: cc.GridScale
    grid_args: tuple = ()       # more `mode-coverage` arguments (the smoke's sizes)
    bench_profile: str = "paper"   # the stacked benchmarks that measure the grid's cost


DEVICE = Scale(
    "device", 480.0,
    stages=(
        ("stacked", tuple(f"test_stacked_members[{{d}}-paper-{k}-{m}-closed_form]"
                          for m in M for k in (1, 4, 16)), 120.0),
        ("fast_path", ("test_fast_path[{d}-eager_fp32-celeba-iwgan]",
                       "test_fast_path[{d}-bf16_channels_last_compile-celeba-iwgan]"), 110.0),
        ("fast_path_options", tuple(f"test_fast_path[{{d}}-{v}-celeba-iwgan]" for v in (
            "bf16", "channels_last", "compile", "compile_cudagraphs")), 120.0),
        ("iteration", (*(f"test_image_iteration[{{d}}-celeba-{m}]" for m in M),
                       *(f"test_mixture_iteration[{{d}}-paper_width-{m}]" for m in M),
                       "test_w1_exact_2500"), 60.0)),
    extras=(
        ("inception", ("test_inception_features[{d}]",), 60.0),
        ("stacked_autograd", tuple(f"test_stacked_members[{{d}}-paper-{k}-{m}-autograd]"
                                   for m in ("iwgan", "wgan_gp") for k in (1, 16)), 120.0),
        ("fast_path_wgan_gp", tuple(f"test_fast_path[{{d}}-{v}-celeba-wgan_gp]" for v in (
            "eager_fp32", "bf16_channels_last_compile", "bf16", "channels_last", "compile",
            "compile_cudagraphs")), 240.0),
        ("scaling", ("test_scaling[{d}-",), 60.0)),
    grid=cc.GridScale())

# The same stages at a CPU's tiny scale: the fast-path benchmarks are the device's (on a
# CPU they record "needs CUDA" at once); the rest are their cheapest relatives.
SMOKE = Scale(
    "smoke", 600.0,
    stages=(
        ("stacked", ("test_stacked_members[{d}-quick-1-ali-closed_form]",
                     "test_stacked_members[{d}-quick-4-ali-closed_form]"), 120.0),
        DEVICE.stages[1], DEVICE.stages[2],
        ("iteration", ("test_mode_coverage_scorer_2500",), 60.0)),
    extras=(("stacked_autograd", ("test_stacked_members[{d}-paper-16-iwgan-autograd]",), 120.0),
            DEVICE.extras[2]),
    grid=cc.GridScale(iterations=(4,), seeds=(2,), max_seeds=2, eval_samples=300,
                      curve_points=2, mixtures=("ring",)),
    grid_args=("--batch-size", "32", "--set", "width=0.05", "--set", "eval_samples=300",
               "--set", "curve_points=2"),
    bench_profile="quick")
SCALES = {"device": DEVICE, "smoke": SMOKE}


# --- the packages the GPU machine lacks --------------------------------------------------------

def _dist(wheel: Path) -> str:
    return wheel.name.split("-")[0].lower().replace("_", "-")


def _import_error(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except Exception as err:   # ImportError, or a broken install: either way not there
        return f"{type(err).__name__}: {err}"
    return None


def provide_packages(wheels: Path | None, site: Path, env: dict) -> dict:
    """POT and pytorch-fid: those that do not import are installed from the carried
    wheels in ``wheels`` (``prepare`` put them there) into ``site``, which this process
    and its children (``env``) then import from. Returns, per package, its version and
    where it came from, or why it is missing (W1 and the Inception benchmark then say so
    in their rows). ``wheels/source.json`` names the commit of a copy without .git."""
    status, missing = {}, [d for d, mod in CARRIED.items() if _import_error(mod)]
    carried = sorted(wheels.glob("*.whl")) if wheels and wheels.is_dir() else []
    if wheels and (wheels / SOURCE_FILE).exists() and git_state()["commit"] == "unknown":
        source = json.loads((wheels / SOURCE_FILE).read_text())
        env[SOURCE_COMMIT] = source["commit"]
        env[SOURCE_DIRTY] = "1" if source.get("dirty") else "0"
    install = [w for w in carried if _dist(w) in missing]
    installed_from = {}
    if install:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
               "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
               *map(str, install)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode == 0:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(site), env.get("PYTHONPATH", "")) if p)
            installed_from = {_dist(w): w.name for w in install}
        else:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            status["wheels"] = f"pip could not install {[w.name for w in install]}: {tail[0]}"
    with environment({}, site if installed_from else None):
        importlib.invalidate_caches()
        errors = {dist: _import_error(module) for dist, module in CARRIED.items()}
        versions = {dist: metadata.version(dist) for dist, e in errors.items() if e is None}
    for dist, error in errors.items():
        if error is None:
            where = (f"carried wheel {installed_from[dist]}" if dist in installed_from
                     else "installed here")
            status[dist] = f"{versions[dist]} ({where})"
        else:
            status[dist] = (f"missing ({error}); "
                            + ("no wheel for it in " + str(wheels) if wheels else
                               "no --wheels folder given") + ": its numbers stay empty, "
                            "with this reason in their rows")
    return status


# --- the campaign --------------------------------------------------------------------------

def log_tail(path: Path, lines: int = 12) -> list[str]:
    if not path.exists():
        return []
    return path.read_text(errors="replace").rstrip().splitlines()[-lines:]


def first_error(log: Path) -> str:
    """The first error pytest reported in ``log`` ("E   ..." lines), else its last line."""
    lines = log_tail(log, 10_000)
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    return (errors or lines or ["see its log"])[0]


@contextlib.contextmanager
def environment(values: dict, site: Path | None):
    """``values`` in os.environ (and ``site`` on sys.path) for the campaign, restored
    after it: the manifests read the source commit from there."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    added = site is not None and site.exists() and str(site) not in sys.path
    if added:
        sys.path.insert(0, str(site))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if added:
            sys.path.remove(str(site))


class Campaign:
    """The stages, the time they have, and their record: written after every stage."""

    def __init__(self, args, scale: Scale, device: str, env: dict, packages: dict):
        self.args, self.scale, self.device, self.env = args, scale, device, env
        self.kind = "cuda" if is_cuda(device) else "cpu"
        self.out = Path(args.out)
        self.logs = self.out / "logs"
        self.budget = args.budget or scale.budget_s
        self.started = args.started
        self.deadline = self.started + self.budget - RESERVE_S
        self.path = self.out / throughput.RESULTS / f"{throughput.results_slug(device)}.json"
        self.earlier = json.loads(self.path.read_text()) if self.path.exists() else None
        self.records: list[dict] = []
        self.failed = False
        used, notes = throughput.resolve_fast_path(FAST_PATH_OPTIONS, device)
        self.manifest = {**throughput.manifest(device),
                         "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
                         "fast_path_requested": list(FAST_PATH_OPTIONS),
                         "fast_path_used": list(used), "fast_path_notes": notes,
                         "tf32": {"cudnn": torch.backends.cudnn.allow_tf32,
                                  "matmul": torch.backends.cuda.matmul.allow_tf32}}
        self.record = {"scale": scale.name, "budget_s": self.budget, "packages": packages,
                       "started": now(), "stages": []}
        print(f"campaign ({scale.name}) on {self.manifest['device']}, budget "
              f"{self.budget:.0f} s; packages: {packages}", flush=True)
        self.estimate = cc.estimated_cost()
        self.record["estimate"] = self.estimate.to_json()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def asked(self, name: str) -> bool:
        return not self.args.stages or name in self.args.stages

    # --- writing -------------------------------------------------------------------------

    def write(self) -> None:
        """The device's throughput file (this campaign's benchmarks, earlier ones kept and
        marked; its record in the manifest), then the bundle."""
        records = sorted(self.records, key=lambda r: r["name"])
        if self.earlier:
            records = throughput.merge_subset(self.earlier, records)
        manifest = {**self.manifest, "campaign": self.record, "finished": now(),
                    "load_average_at_end": [round(v, 2) for v in os.getloadavg()]}
        write_json(self.path, {"schema_version": 1, "device_kind": self.kind,
                               "manifest": manifest, "benchmarks": records})
        if self.args.bundle:
            write_bundle(self.out, Path(self.args.bundle))

    def finish_stage(self, entry: dict, log: Path | None = None) -> None:
        if entry["status"] not in ("ok", "not asked (--stages)"):
            self.failed = self.failed or not entry["status"].startswith("did not fit")
        self.record["stages"].append(entry)
        self.write()
        took = f" in {entry['seconds']:.0f} s" if "seconds" in entry else ""
        print(f"stage {entry['name']}: {entry['status']}{took} "
              f"({self.left():.0f} s left)", flush=True)
        if log is not None and entry["status"] != "ok":
            for line in log_tail(log):
                print(f"  | {line}", flush=True)

    # --- the stages ----------------------------------------------------------------------

    def benchmarks(self, name: str, names, cap: float, optional: bool = False) -> None:
        names = [n.format(d=self.kind) for n in names]
        estimate = cc.benchmark_seconds(names, self.cost())
        limit = min(cap, self.left())
        entry = {"name": name, "kind": "benchmarks", "benchmarks": names,
                 "estimate_s": round(estimate, 1), "limit_s": round(max(limit, 0), 1)}
        if not self.asked(name):
            return self.finish_stage({**entry, "status": "not asked (--stages)"})
        if limit < MIN_STAGE_S or (optional and estimate > limit):
            status = (f"did not fit: estimated {estimate:.0f} s, {max(self.left(), 0):.0f} s "
                      "left")
            earlier = {r["name"] for r in (self.earlier or {}).get("benchmarks", [])}
            self.records += [self.not_run(n, f"{status} (campaign stage {name})")
                             for n in names if not n.endswith("-") and n not in earlier]
            return self.finish_stage({**entry, "status": status})
        log = self.logs / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        rc, records = throughput.run_benchmarks(self.device, FAST_PATH_OPTIONS,
                                                " or ".join(names), timeout=limit, log=log,
                                                env=self.env)
        entry["seconds"] = round(time.monotonic() - start, 1)
        records = records or []
        status = ("ok" if rc == 0 else f"timed out at its limit of {limit:.0f} s"
                  if rc == TIMED_OUT else "no benchmark matched" if rc == 5 else
                  f"failed (pytest exit {rc})")
        ran = {r["name"] for r in records}
        missing = [n for n in names if not n.endswith("-") and n not in ran]
        reason = status if rc != 1 else f"failed: {first_error(log)}"
        records += [self.not_run(n, f"{reason} (campaign stage {name}; logs/{name}.log)")
                    for n in missing]
        self.records = [r for r in self.records if r["name"] not in
                        {x["name"] for x in records}] + records
        entry.update(status=status, exit_code=rc,
                     measured=sum(r["status"] == "ok" for r in records),
                     not_run=sum(r["status"] != "ok" for r in records))
        self.finish_stage(entry, log)

    @staticmethod
    def not_run(name: str, reason: str) -> dict:
        """The record of a benchmark the campaign did not get from pytest, and why."""
        return {"name": name, "group": None, "status": "not run", "params": {},
                "reason": reason}

    def cost(self) -> cc.CostModel:
        """The estimate, with what this campaign has measured so far."""
        return cc.measured_cost(self.records, replace_cost(self.estimate),
                                self.scale.bench_profile)

    def grid(self) -> None:
        """The paper-profile grid: what fits the time left, each method one stack."""
        cost = self.cost()
        entry = {"name": "mode_coverage", "kind": "mode_coverage",
                 "cost_model": cost.to_json()}
        if not self.asked("mode_coverage"):
            return self.finish_stage({**entry, "status": "not asked (--stages)"})
        plan = cc.plan_mode_coverage(self.left() / PLAN_MARGIN, cost, self.scale.grid)
        entry["plan"] = plan
        if plan["fits"]:
            entry["estimate_s"] = plan["estimate_s"]
        else:
            return self.finish_stage({**entry, "status": f"did not fit: {plan['reason']}"})
        print(f"grid: {plan['iterations']} iterations, {plan['seeds']} seeds, blocks "
              f"{plan['blocks']}; estimated {plan['estimate_s']:.0f} s", flush=True)
        log = self.logs / "mode_coverage.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        start, runs, statuses = time.monotonic(), [], []
        entry["invocations"] = []
        for inv in plan["invocations"]:
            argv = self.grid_argv(inv, plan)
            ids = [c.run_id for c in grid_configs(mode_coverage_parser().parse_args(argv[1:]))]
            t = time.monotonic()
            with open(log, "a") as f, self.bundling(self.out / "results" / "mode_coverage.csv"):
                f.write(f"$ python -m iwgan {' '.join(argv)}\n")
                f.flush()
                rc = throughput.run_group([sys.executable, "-m", "iwgan", *argv],
                                          timeout=max(self.left(), 1.0), cwd=ROOT,
                                          env=self.env, stdout=f, stderr=subprocess.STDOUT)
            rows = self.rows(ids)
            statuses.append(rc)
            runs += ids
            entry["invocations"].append({
                "command": "python -m iwgan " + " ".join(argv), "exit_code": rc,
                "seconds": round(time.monotonic() - t, 1), "runs": len(ids),
                "recorded": len(rows), "statuses": rows.status.value_counts().to_dict()
                if len(rows) else {}})
            if rc == TIMED_OUT:
                break
        entry["seconds"] = round(time.monotonic() - start, 1)
        done = self.rows(runs)
        entry["status"] = ("ok" if all(rc == 0 for rc in statuses) and len(done) == len(runs)
                           else f"timed out: {len(done)} of {len(runs)} runs recorded"
                           if TIMED_OUT in statuses else
                           f"failed (exit {[rc for rc in statuses if rc]}): {len(done)} of "
                           f"{len(runs)} runs recorded")
        self.finish_stage(entry, log)

    @contextlib.contextmanager
    def bundling(self, path: Path, every: float = 5.0):
        """While the block runs, the bundle is written again whenever ``path`` changes (a
        method's stack finished): a kill from outside the campaign keeps those runs too."""
        if not self.args.bundle:
            yield
            return
        stop = threading.Event()

        def watch():
            seen = None
            while not stop.wait(every):
                mtime = path.stat().st_mtime if path.exists() else None
                if mtime != seen:
                    seen = mtime
                    with contextlib.suppress(OSError):
                        write_bundle(self.out, Path(self.args.bundle))

        thread = threading.Thread(target=watch, daemon=True, name="bundle")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def grid_argv(self, inv: dict, plan: dict) -> list[str]:
        return ["mode-coverage", "--profile", "paper", "--methods", *inv["methods"],
                "--presets", *inv["presets"], "--mixtures", *self.scale.grid.mixtures,
                "--seeds", str(plan["seeds"]), "--iterations", str(plan["iterations"]),
                "--device", self.device, "--stack", "on", "--jobs", "1", "--resume",
                "--no-report", "--out", str(self.out), *self.scale.grid_args]

    def rows(self, ids) -> pd.DataFrame:
        csv = self.out / "results" / "mode_coverage.csv"
        if not csv.exists():
            return pd.DataFrame(columns=["run_id", "status"])
        df = read_results(csv)
        return df[df.run_id.isin(set(ids))]

    def run(self) -> int:
        for name, names, cap in self.scale.stages:
            self.guarded(self.benchmarks, name, names, cap)
        self.guarded(self.grid)
        for name, names, cap in self.scale.extras:
            self.guarded(self.benchmarks, name, names, cap, optional=True)
        self.record.update(finished=now(), wall_s=round(time.monotonic() - self.started, 1))
        self.write()
        print(f"campaign done in {self.record['wall_s']:.0f} s: {self.path}"
              + (f", bundle {self.args.bundle}" if self.args.bundle else ""), flush=True)
        for s in self.record["stages"]:
            print(f"  {s['name']:<18} {s['status']}"
                  + (f" ({s['seconds']:.0f} s, estimated {s['estimate_s']:.0f} s)"
                     if "seconds" in s and "estimate_s" in s else ""), flush=True)
        return 1 if self.failed else 0

    def guarded(self, fn, *args, **kwargs) -> None:
        """A stage that raises is recorded as failed; the campaign goes on."""
        try:
            fn(*args, **kwargs)
        except Exception as err:
            name = args[0] if args and isinstance(args[0], str) else "mode_coverage"
            self.finish_stage({"name": name, "status": f"failed: {type(err).__name__}: {err}"})


def replace_cost(cost: cc.CostModel) -> cc.CostModel:
    """A copy of ``cost`` that measurements may change without touching the estimate."""
    return replace(cost, stack=dict(cost.stack), single=dict(cost.single),
                   image=dict(cost.image), source=dict(cost.source))


def mode_coverage_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m iwgan mode-coverage")
    mode_coverage.add_arguments(p)
    return p


def write_bundle(out: Path, bundle: Path) -> None:
    """results/ and logs/ of ``out`` as one .tar.gz, replaced atomically."""
    buf = tempfile.SpooledTemporaryFile(max_size=64 << 20)
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for part in ("results", "logs"):
            if (out / part).exists():
                tar.add(out / part, arcname=part,
                        filter=lambda t: None if t.name.endswith(".lock") else t)
    buf.seek(0)
    atomic_write_bytes(bundle, buf.read())


def run(args) -> int:
    scale = SMOKE if args.smoke else DEVICE
    if args.smoke:
        if args.device not in (None, "cpu"):
            raise ValueError("--smoke runs on the CPU; drop --device")
        device = "cpu"
    else:
        device = args.device or default_device()
        if not is_cuda(device):
            raise ValueError("the campaign measures a GPU, and torch sees no CUDA device "
                             "here: run it on a CUDA machine, or add --smoke for its CPU "
                             "smoke mode")
    check_device(device)
    unknown = sorted(set(args.stages or ()) - stage_names())
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; choose from {sorted(stage_names())}")
    site = Path(args.out) / "site"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    packages = provide_packages(args.wheels, site, env)
    with environment({k: env[k] for k in (SOURCE_COMMIT, SOURCE_DIRTY) if k in env}, site):
        return Campaign(args, scale, device, env, packages).run()


def stage_names() -> set[str]:
    return {n for s in SCALES.values() for n, _, _ in (*s.stages, *s.extras)} | {"mode_coverage"}


# --- plan, prepare, merge ----------------------------------------------------------------------

def estimate_run(scale: Scale, budget: float, cost: cc.CostModel) -> dict:
    """The run's stages as planned before it starts: each benchmark stage's estimated
    seconds (at most its limit), the grid that fits the rest, the extras' estimates."""
    kind = "cuda" if scale is DEVICE else "cpu"
    stages = {name: min(cap, cc.benchmark_seconds([n.format(d=kind) for n in names], cost))
              for name, names, cap in scale.stages}
    grid = cc.plan_mode_coverage((budget - RESERVE_S - sum(stages.values())) / PLAN_MARGIN,
                                 cost, scale.grid)
    extras = {name: cc.benchmark_seconds([n.format(d=kind) for n in names], cost)
              for name, names, _ in scale.extras}
    total = sum(stages.values()) + (grid["estimate_s"] if grid["fits"] else 0.0)
    return {"stages": stages, "grid": grid, "extras": extras, "total_s": total}


def blocks_text(blocks) -> str:
    return "; ".join(f"{' '.join(b['methods'])} {b['preset']}" for b in blocks)


def plan(args) -> int:
    """The device run's stages with their estimated seconds (no GPU needed)."""
    scale = SCALES[args.scale]
    budget = args.budget or scale.budget_s
    cost = cc.estimated_cost()
    est = estimate_run(scale, budget, cost)
    print(f"estimated stages of the {scale.name} run (budget {budget:.0f} s, "
          f"{RESERVE_S:.0f} s kept back):")
    for (name, names, cap), s in zip(scale.stages, est["stages"].values()):
        print(f"  {name:<18} {s:6.0f} s  (at most {cap:.0f} s; {len(names)} benchmarks)")
    grid = est["grid"]
    if grid["fits"]:
        print(f"  {'mode_coverage':<18} {grid['estimate_s']:6.0f} s  ({grid['iterations']} "
              f"iterations, {grid['seeds']} seeds: {blocks_text(grid['blocks'])}"
              + (f"; left out: {blocks_text(grid['left_out'])}" if grid["left_out"] else "")
              + ")")
    else:
        print(f"  {'mode_coverage':<18} did not fit: {grid['reason']}")
    for name, s in est["extras"].items():
        print(f"  {name:<18} {s:6.0f} s  (only if time is left)")
    print(f"  total before the extras: {est['total_s']:.0f} s")
    full = cc.grid_seconds(cc.BLOCKS, 20_000, 3, cost, cc.GridScale())
    print(f"the whole paper-profile grid (4 methods x 3 mixtures x 2 presets x 3 seeds, "
          f"20,000 iterations) would take an estimated {full / 60:.0f} min")
    print("per-iteration costs (ms; stacked: host + per member):")
    for m in M:
        h, c = cost.stack[m]
        print(f"  {m:<9} one run {cost.single[m]:6.1f}   stack {h:6.1f} + {c:.2f} K")
    return 0


def prepare(args) -> int:
    """POT's and pytorch-fid's wheels for the GPU machine's Python (3.12, manylinux
    x86_64), the versions installed here, into ``--wheels`` (git-ignored .whl/) unless
    they are there, and the commit this checkout is at now (the copy sent there has no
    .git): run it right before the device call, after the last commit."""
    wheels = Path(args.wheels or DEFAULT_WHEELS)
    wheels.mkdir(parents=True, exist_ok=True)
    for dist in CARRIED:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            raise ValueError(f"{dist} is not installed here, so its version is unknown: "
                             "pip install -e . first") from None
        have = [w for w in wheels.glob("*.whl") if _dist(w) == dist]
        if [w.name.split("-")[1] for w in have] == [version]:
            print(f"{have[0].name}: already here")
            continue
        for old in have:   # one version each: two stop the whole install
            old.unlink()
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", args.python, "--implementation", "cp",
               *[x for p in WHEEL_PLATFORMS for x in ("--platform", p)],
               "-d", str(wheels), f"{dist}=={version}"]
        print("$ " + " ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode:
            raise ValueError(f"pip could not download {dist}=={version} for Python "
                             f"{args.python} (see above)")
    write_json(wheels / SOURCE_FILE, {**git_state(), "prepared": now()})
    for w in sorted(wheels.glob("*.whl")):
        print(f"{w.name} ({w.stat().st_size / 2**20:.1f} MiB)")
    return 0


def merge_results(src: Path, into: Path) -> list[str]:
    """A campaign's results (``src``: its results/ folder) into ``into`` (a results/
    folder), through the suite's own writers: the throughput file merged benchmark by
    benchmark (earlier ones kept and marked), the grid's rows and curves upserted by run
    id, its samples copied, its wall-time records added."""
    done = []
    for path in sorted((src / "throughput").glob("*.json")):
        new, dst = json.loads(path.read_text()), into / "throughput" / path.name
        if dst.exists():
            new["benchmarks"] = throughput.merge_subset(json.loads(dst.read_text()),
                                                        new["benchmarks"])
        write_json(dst, new)
        done.append(f"throughput/{path.name}: {len(new['benchmarks'])} benchmarks")
    csv = src / "mode_coverage.csv"
    if csv.exists():
        rows = read_results(csv)
        upsert_results(into / "mode_coverage.csv",
                       [{k: v for k, v in r.items() if not pd.isna(v)}
                        for r in rows.drop(columns="schema_version").to_dict("records")])
        done.append(f"mode_coverage.csv: {len(rows)} runs")
        curves = src / "mode_coverage_curves.csv"
        if curves.exists():
            upsert_curves(into / "mode_coverage_curves.csv", [pd.read_csv(curves)])
        samples = sorted((src / "mode_coverage_samples").glob("*.npy"))
        for f in samples:
            atomic_write_bytes(into / "mode_coverage_samples" / f.name, f.read_bytes())
        done.append(f"mode_coverage_samples: {len(samples)} files")
        if not (into / "mixtures.json").exists() and (src / "mixtures.json").exists():
            atomic_write_bytes(into / "mixtures.json", (src / "mixtures.json").read_bytes())
    for path in sorted((src / "benchmarks").glob("*_wall_time.json")):
        entries = json.loads(path.read_text())
        update_json(into / "benchmarks" / path.name, lambda r, e=entries: r.update(e))
        done.append(f"benchmarks/{path.name}: {sorted(entries)}")
    return done


def merge(args) -> int:
    source = Path(args.source)
    if not source.exists():
        raise ValueError(f"{source}: no such bundle or folder")
    with tempfile.TemporaryDirectory() as tmp:
        if source.is_file():
            with tarfile.open(source) as tar:
                tar.extractall(tmp, filter="data")
            source = Path(tmp)
        results = source / "results"
        if not results.is_dir():
            raise ValueError(f"{args.source}: no results/ folder in it; give the campaign's "
                             "--bundle or its --out folder")
        scales = {json.loads(p.read_text())["manifest"].get("campaign", {}).get("scale")
                  for p in (results / "throughput").glob("*.json")}
        if "smoke" in scales and not args.allow_smoke:
            raise ValueError(f"{args.source} holds a smoke run (the CPU's tiny scale), not "
                             "measurements to commit; add --allow-smoke to merge it anyway")
        for line in merge_results(results, Path(args.into) / "results"):
            print(f"merged {line}")
    print("now rebuild the reports: python -m iwgan reports")
    return 0


def main(argv=None, started: float | None = None) -> int:
    """``started``: when the budget began (the script's start; default now)."""
    started = time.monotonic() if started is None else started
    parser = argparse.ArgumentParser(prog="python benchmarks/gpu_campaign.py",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="the campaign (on a GPU), or its CPU smoke mode")
    p.add_argument("--smoke", action="store_true",
                   help="the same stages on the CPU at a tiny scale (about a minute)")
    p.add_argument("--device", default=None, help="cuda or cuda:N (default: cuda)")
    p.add_argument("--out", type=Path, default=Path("runs") / "gpu_campaign",
                   help="where results/, logs/ and runs/ go (default runs/gpu_campaign; "
                   "`merge` brings its results into the suite's)")
    p.add_argument("--bundle", type=Path, default=None,
                   help="also keep results/ and logs/ as this .tar.gz, refreshed after "
                   "every stage (on the GPU machine: $OUT/campaign.tar.gz)")
    p.add_argument("--budget", type=float, default=None,
                   help=f"seconds for the whole campaign (default {DEVICE.budget_s:.0f}; "
                   f"smoke {SMOKE.budget_s:.0f})")
    p.add_argument("--wheels", type=Path, default=None,
                   help="carried wheels of POT and pytorch-fid (`prepare` makes them), "
                   "installed if they do not import")
    p.add_argument("--stages", nargs="+", default=None, metavar="STAGE",
                   help="run only these stages (e.g. to finish a campaign cut short; the "
                   "grid resumes its finished runs)")
    p.set_defaults(func=run)
    p = sub.add_parser("plan", help="the stages' estimated seconds (no GPU needed)")
    p.add_argument("--scale", choices=SCALES, default="device")
    p.add_argument("--budget", type=float, default=None)
    p.set_defaults(func=plan)
    p = sub.add_parser("prepare", help="POT's and pytorch-fid's wheels for the GPU machine")
    p.add_argument("--wheels", type=Path, default=None,
                   help=f"the folder (default {DEFAULT_WHEELS.relative_to(ROOT)}/, git-ignored)")
    p.add_argument("--python", default="3.12", help="the GPU machine's Python (3.12)")
    p.set_defaults(func=prepare)
    p = sub.add_parser("merge", help="a campaign's results into this checkout's results/")
    p.add_argument("source", help="the campaign's --bundle (.tar.gz) or --out folder")
    p.add_argument("--into", type=Path, default=Path("."), help="root of results/ (.)")
    p.add_argument("--allow-smoke", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=merge)
    args = parser.parse_args(argv)
    args.started = started
    try:
        return args.func(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the stages that finished are in the results and the bundle",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main(started=STARTED))
