"""Throughput: what the benchmarks in benchmarks/ time, and the runner behind
``nox -s throughput`` / ``python -m iwgan throughput``.

The runner runs ``pytest benchmarks/`` (pytest-benchmark) in a subprocess, then writes
one small JSON per device under ``results/throughput/`` (every number with the load
average and CPU count it was taken under, and the run's manifest: commit, versions,
platform, device, threads) and rebuilds ``reports/throughput.md``. A benchmark that
cannot run here is recorded with its reason instead of a number.

The GPU fast path for the image networks (bf16 autocast, channels_last, torch.compile,
CUDA graphs through compile's "reduce-overhead" mode) is :class:`ImageStepper`; on a
machine without CUDA every fast-path option falls back to eager fp32, with a message,
and the fallback is recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from iwgan.core.methods import adam
from iwgan.data.mixtures import MixtureBatches
from iwgan.engine.config import make_image_config
from iwgan.engine.devices import check_device, cpu_model, default_device
from iwgan.engine.records import REPO_ROOT, git_state, now, package_versions
from iwgan.engine.trainer import Trainer
from iwgan.files import write_json

FAST_PATH_OPTIONS = ("bf16", "channels_last", "compile", "cudagraphs")
# Variants the fast-path benchmark compares with eager fp32.
FAST_PATH_VARIANTS = {
    "eager_fp32": (),
    "bf16": ("bf16",),
    "channels_last": ("channels_last",),
    "compile": ("compile",),
    "compile_cudagraphs": ("compile", "cudagraphs"),
    "bf16_channels_last_compile": ("bf16", "channels_last", "compile"),
}
# Dense peak FLOP/s by GPU name fragment and precision, for MFU (vendor datasheets, SXM):
# fp32 = FP32 CUDA cores (torch's matmuls stay off TF32 by default), tf32 = dense TF32
# tensor cores (cuDNN's convolutions use them by default: torch.backends.cudnn.allow_tf32),
# bf16 = dense bf16 tensor cores.
PEAK_FLOPS = {"H100": {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989e12},
              "H200": {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989e12},
              "A100": {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12}}
RESULTS = Path("results") / "throughput"


def resolve_fast_path(options, device: str) -> tuple[tuple[str, ...], list[str]]:
    """The fast-path options that will actually be used on ``device``, and the messages
    for those that fall back. Every option is a CUDA option here: on CPU, bf16 autocast is
    slower than fp32 matmuls on most CPUs, CUDA graphs do not exist, and torch.compile of
    the double-backward gradient penalty is unsupported; the fallback is eager fp32."""
    unknown = sorted(set(options) - set(FAST_PATH_OPTIONS))
    if unknown:
        raise ValueError(f"unknown fast-path option(s) {unknown}; choose from "
                         f"{', '.join(FAST_PATH_OPTIONS)}")
    if "cudagraphs" in options and "compile" not in options:
        raise ValueError("cudagraphs is applied through torch.compile(mode='reduce-overhead'); "
                         "ask for compile as well")
    if str(device).startswith("cuda"):
        return tuple(o for o in FAST_PATH_OPTIONS if o in options), []
    notes = [f"{o} needs CUDA; this {device} run falls back to eager fp32" for o in options]
    return (), notes


def conv_precision(device: str, precision: str) -> str:
    """The precision the image networks' convolutions run in: on CUDA, "fp32" asks
    cuDNN for TF32 tensor cores unless torch.backends.cudnn.allow_tf32 is off (torch's
    default is on), so their MFU is against the TF32 peak; elsewhere ``precision``."""
    if precision == "fp32" and str(device).startswith("cuda") \
            and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return precision


def peak_flops(device: str, precision: str) -> float | None:
    if not str(device).startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    for key, peaks in PEAK_FLOPS.items():
        if key in name:
            return peaks[precision]
    return None


def count_flops(fn) -> int:
    """FLOPs of one call of ``fn`` (forward and backward), by FlopCounterMode. Its module
    tracker hooks every module's backward, which ``torch.autograd.grad`` on a leaf (the
    gradient penalty) refuses; then the same per-op FLOP formulas (its flop_registry) are
    summed by a plain dispatch mode without module hooks."""
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
        return int(counter.get_total_flops())
    except RuntimeError as err:
        if "_will_engine_execute_node" not in str(err):
            raise
    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                Counter.total += formula(*args, **kwargs, out_val=out)
            return out

    with Counter():
        fn()
    return int(Counter.total)


def peak_memory_start(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_memory(device: str) -> tuple[float, str]:
    """(MiB, what it is). CUDA: torch's peak allocated since the last reset. CPU: the
    process's max resident set size (resource.getrusage), a running maximum over the
    whole benchmark session so far, so an upper bound for any one benchmark."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20, "cuda max_memory_allocated"
    import resource  # Unix only: imported where the CPU figure is asked for

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "max RSS (running)"


def cpu_gemm_peak(repeats: int = 5) -> dict:
    """This core's fp32 matmul rate now (one thread, GFLOP/s, the best of ``repeats``):
    a 2048 x 2048 GEMM, and the converged stack's own shape, 15 x (64x128 @ 128x128)
    batched; measured in the same run as the numbers it divides, since load on a shared
    machine moves both alike."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for name, a, b in (("gemm_2048", torch.randn(2048, 2048), torch.randn(2048, 2048)),
                           ("bmm_15x64x128x128", torch.randn(15, 64, 128),
                            torch.randn(15, 128, 128))):
            flops = 2 * a.shape[-2] * a.shape[-1] * b.shape[-1] * (a.shape[0] if a.dim() == 3
                                                                  else 1)
            calls = 1 if a.dim() == 2 else 200
            torch.matmul(a, b)
            best = math.inf
            for _ in range(repeats):
                start = time.perf_counter()
                for _ in range(calls):
                    torch.matmul(a, b)
                best = min(best, (time.perf_counter() - start) / calls)
            out[name] = flops / best / 1e9
        return out
    finally:
        torch.set_num_threads(threads)


def todays_stack_optimizer(stepper: Stepper) -> Stepper:
    """The stacked step as the suite ran it before members could differ (commit aa4fd0f):
    torch.optim.Adam on the stacked tensors, the schedule on it. Its updates are the
    default ``adam="torch"`` path's, bit for bit (tests/engine/test_member_settings.py);
    the benchmarks time it as "before"."""
    trainer, members = stepper.trainer, stepper.trainer.members
    members.optimizers = {name: adam(params, members.cfg)
                          for name, params in members.groups.items()}
    if trainer.schedulers:
        trainer.schedulers = {name: torch.optim.lr_scheduler.LambdaLR(
            opt, trainer.schedulers[name].lr_lambdas[0])
            for name, opt in members.optimizers.items()}
    return stepper


# --- the trainer's iteration, for the benchmarks ----------------------------------------

class Stepper:
    """One outer iteration of the one trainer (iwgan.engine.trainer) at a time: what
    every benchmark times, on any device, for K >= 1 stacked members."""

    def __init__(self, trainer: Trainer, used=(), notes=()):
        self.trainer, self.used, self.notes = trainer, tuple(used), list(notes)
        self.device = trainer.members.device
        self.models = trainer.members.member(0) if trainer.members.k == 1 else None
        self.precision = trainer.plan["precision_used"]

    def batches_per_iteration(self) -> int:
        return sum(phase.count for phase in self.trainer.phases)

    def iteration(self) -> list[dict]:
        """The members' logs of one iteration, as floats (the trainer's one sync)."""
        return self.trainer.run_iteration()


class MixtureStepper(Stepper):
    """The mixture iteration of ``cfgs`` (a config, or the members of one stack)."""

    def __init__(self, cfgs):
        cfgs = list(cfgs) if isinstance(cfgs, (list, tuple)) else [cfgs]
        super().__init__(Trainer(cfgs, MixtureBatches(cfgs)))


class RandomImages:
    """Random images in [0, 1] as training data (throughput only)."""

    def __init__(self, shape, device, seed: int = 0):
        self.shape, self.device = tuple(shape), device
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def sample(self, k: int, n: int, generator) -> torch.Tensor:
        return torch.rand(n, *self.shape, device=self.device, generator=self.generator)


class ImageStepper(Stepper):
    """One iteration (the method's phases, one critic step per phase: ``n_critic`` = 1)
    on the image networks of ``arch``, random images as data, with the fast-path options
    that ``resolve_fast_path`` allows on ``device``."""

    def __init__(self, method: str, arch: str, batch_size: int, device: str = "cpu",
                 options=(), seed: int = 0, width: float = 1.0):
        used, notes = resolve_fast_path(options, device)
        # The image experiments' optimiser settings (Adam 1e-4, betas 0.5/0.9, lambdas).
        dataset = "celeba" if arch == "celeba" else "mnist"
        cfg = make_image_config(dataset, "paper", method=method, width=width, seed=seed,
                                batch_size=batch_size, n_critic=1, device=device,
                                precision="bf16" if "bf16" in used else "fp32",
                                channels_last="channels_last" in used)
        trainer = Trainer([cfg], RandomImages(cfg.input_shape, device, seed))
        if "compile" in used:
            mode = "reduce-overhead" if "cudagraphs" in used else None
            # The gradient penalty differentiates the critic twice, which compiled graphs
            # do not support, and ALI indexes its critic: those critics stay eager.
            models = trainer.members.models
            names = ["generator", "encoder"] + (["critic"] if method == "alpha_gan" else [])
            for name in names:
                if getattr(models, name) is not None:
                    setattr(models, name, torch.compile(getattr(models, name), mode=mode))
        super().__init__(trainer, used, notes)


def loss_curves(stepper: Stepper, steps: int) -> dict[str, list[float]]:
    """Member 0's logged losses over ``steps`` iterations."""
    curves: dict[str, list[float]] = {}
    for _ in range(steps):
        for k, v in stepper.iteration()[0].items():
            curves.setdefault(k, []).append(v)
    return curves


# The fast path keeps training "on track" when every logged loss's 25-step moving average
# stays within REL x |eager moving average| + ABS x max |eager moving average| of the eager
# fp32 run from the same seed and data stream, at every step.
CURVE_WINDOW, CURVE_REL, CURVE_ABS = 25, 0.10, 0.05


def moving_average(values, window=CURVE_WINDOW):
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v - (values[i - window] if i >= window else 0.0)
        out.append(acc / min(i + 1, window))
    return out


def compare_curves(eager: dict, other: dict) -> dict:
    """The worst ratio of deviation to tolerance per loss (<= 1: on track)."""
    worst = {}
    for key, a in eager.items():
        ma, mb = moving_average(a), moving_average(other[key])
        scale = max(abs(v) for v in ma) or 1.0
        worst[key] = max(abs(x - y) / (CURVE_REL * abs(x) + CURVE_ABS * scale)
                         for x, y in zip(ma, mb))
    return worst


# --- the runner ------------------------------------------------------------------------------

def wait_for_load(max_load: float, timeout: float) -> tuple[float, float]:
    """Poll the 1-minute load average until it is below ``max_load`` or ``timeout`` s have
    passed; (load when measuring starts, seconds waited)."""
    start = time.monotonic()
    while os.getloadavg()[0] >= max_load and time.monotonic() - start < timeout:
        time.sleep(10)
    return os.getloadavg()[0], time.monotonic() - start


def manifest(device: str) -> dict:
    return {**git_state(), "packages": {**package_versions(),
                                        "pytest-benchmark": _version("pytest-benchmark")},
            "python": sys.version.split()[0], "platform": platform.platform(),
            "device": torch.cuda.get_device_name() if device.startswith("cuda")
            else platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "started": now()}


def _version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _round(v, digits=4):
    if isinstance(v, float):
        return float(f"{v:.{digits}g}") if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _round(x, digits) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_round(x, digits) for x in v]
    return v


def collect(bench_json: dict, skips: list[dict]) -> list[dict]:
    """One compact record per benchmark: seconds per call and the extra_info the
    benchmark computed (items/s, load average, memory, ...); skipped ones with reason."""
    out = []
    for b in bench_json.get("benchmarks", []):
        s = b["stats"]
        out.append(_round({"name": b["name"], "group": b.get("group"), "status": "ok",
                           "params": b.get("params") or {}, "median_s": s["median"],
                           "iqr_s": s["iqr"], "min_s": s["min"], "rounds": s["rounds"],
                           **b.get("extra_info", {})}))
    for s in skips:
        out.append({"name": s["name"], "group": s.get("group"), "status": "not run",
                    "reason": s["reason"], "params": s.get("params", {})})
    return sorted(out, key=lambda r: r["name"])


TIMED_OUT = 124   # the exit code of a command stopped at its time limit (as timeout(1))


def run_group(cmd, timeout: float | None = None, **kwargs) -> int:
    """``subprocess.run(cmd)`` in a process group of its own; at ``timeout`` seconds the
    whole group (torch.compile's worker processes too) is killed and TIMED_OUT returned."""
    proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)

    def kill_group():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group()
        return TIMED_OUT
    except BaseException:   # this process interrupted: leave no orphans behind
        kill_group()
        raise


def read_partial(path: Path) -> tuple[dict, list[dict]]:
    """The benchmarks and skips that benchmarks/conftest.py appended to ``path`` (one JSON
    object a line) as each finished: what a run stopped at its time limit leaves."""
    benchmarks, skips = [], []
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:   # a line cut off by the kill
                continue
            (skips if entry.pop("kind") == "skip" else benchmarks).append(entry)
    return {"benchmarks": benchmarks}, skips


def run_benchmarks(device: str, fast_path, select: str | None, timeout: float | None = None,
                   log: Path | None = None, env: dict | None = None) -> tuple[int, list | None]:
    """Run pytest benchmarks/ in a subprocess (its output appended to ``log`` if given;
    ``env`` instead of this process's environment); (exit code, records or None).
    Stopped at ``timeout`` seconds (exit code TIMED_OUT), it returns the benchmarks
    that finished."""
    root = REPO_ROOT
    with tempfile.TemporaryDirectory() as tmp, \
            (open(log, "a") if log else contextlib.nullcontext()) as out:
        bench, skips = Path(tmp) / "bench.json", Path(tmp) / "skips.json"
        partial = Path(tmp) / "partial.jsonl"
        env = {**(os.environ if env is None else env), "THROUGHPUT_DEVICE": device,
               "THROUGHPUT_SKIPS": str(skips), "THROUGHPUT_PARTIAL": str(partial),
               "THROUGHPUT_FAST_PATH": ",".join(fast_path)}
        cmd = [sys.executable, "-m", "pytest", str(root / "benchmarks"), "-o", "addopts=",
               "-p", "no:cacheprovider", "--benchmark-enable", f"--benchmark-json={bench}",
               "-q", "-rs"] + (["-k", select] if select else [])
        rc = run_group(cmd, timeout, cwd=root, env=env,
                       **({"stdout": out, "stderr": subprocess.STDOUT} if out else {}))
        if bench.exists():
            records = collect(json.loads(bench.read_text()),
                              json.loads(skips.read_text()) if skips.exists() else [])
        elif partial.exists():   # stopped at its time limit, or nothing but skips ran
            records = collect(*read_partial(partial))
        else:
            return rc or 1, None
    return rc, records


def merge_subset(old: dict, new: list[dict]) -> list[dict]:
    """A ``-k`` subset replaces its own benchmarks and keeps every other one of the
    earlier file, each marked with the run that measured it (``earlier_run``)."""
    measured = {r["name"] for r in new}
    m = old["manifest"]
    earlier = {"commit": m["commit"], "dirty": m["dirty"], "started": m["started"],
               "command": m["command"], "cpu_capability": m.get("cpu_capability"),
               "cpu_model": m.get("cpu_model")}
    kept = [{"earlier_run": earlier, **r} for r in old["benchmarks"]
            if r["name"] not in measured]
    return sorted(kept + new, key=lambda r: r["name"])


def results_slug(device: str) -> str:
    """The name of a device's results file: cpu, or cuda-<the GPU's name>."""
    if not str(device).startswith("cuda"):
        return "cpu"
    name = torch.cuda.get_device_name(torch.device(device)).lower()
    return "cuda-" + "".join(c if c.isalnum() else "-" for c in name).strip("-")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    p.add_argument("--fast-path", nargs="*", default=["bf16", "channels_last", "compile",
                                                     "cudagraphs"],
                   metavar="OPTION", help=f"GPU fast-path options the image benchmark may "
                   f"use, of {FAST_PATH_OPTIONS} (default: all; CUDA only: on CPU they fall "
                   "back to eager fp32, recorded)")
    p.add_argument("-k", dest="select", default=None, help="pytest -k expression (a subset)")
    p.add_argument("--max-load", type=float, default=1.5,
                   help="wait for the 1-minute load average to fall below this (default 1.5)")
    p.add_argument("--wait", type=float, default=180.0,
                   help="at most this many seconds of waiting for it (default 180)")
    p.add_argument("--out", type=Path, default=Path("."), help="root of results/ and reports/")
    p.add_argument("--no-report", action="store_true", help="do not rebuild the report")


def command(args) -> int:
    device = args.device or default_device()
    check_device(device)
    used, notes = resolve_fast_path(args.fast_path, device)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    load, waited = wait_for_load(args.max_load, args.wait)
    record = manifest(device)
    record.update(load_average_at_start=[round(v, 2) for v in os.getloadavg()],
                  waited_for_load_s=round(waited),
                  max_load_asked=args.max_load, fast_path_requested=list(args.fast_path),
                  fast_path_used=list(used), fast_path_notes=notes)
    rc, records = run_benchmarks(device, args.fast_path, args.select)
    if records is None:
        print(f"error: the benchmarks wrote no results (pytest exit {rc})", file=sys.stderr)
        return rc
    record.update(load_average_at_end=[round(v, 2) for v in os.getloadavg()], finished=now())
    path = args.out / RESULTS / f"{results_slug(device)}.json"
    if args.select and path.exists():
        records = merge_subset(json.loads(path.read_text()), records)
    write_json(path, {"schema_version": 1, "device_kind": "cuda" if device != "cpu" else "cpu",
                      "manifest": record, "benchmarks": records})
    print(f"results: {path} ({len(records)} benchmarks, "
          f"{sum(r['status'] != 'ok' for r in records)} not run)")
    if not args.no_report:
        # Imported here: matplotlib and seaborn, needed only to rebuild the report.
        from iwgan.reporting.throughput import build_report

        print(f"report: {build_report(args.out / 'results', args.out / 'reports')}")
    return rc
