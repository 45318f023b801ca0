"""Where a stacked iteration's time goes: torch.profiler on one converged-profile stack per
method (width 0.25, batch 64, n_critic 5, EMA, K = 15 members over the 6 mixture x preset
cells, one thread), the trainer's own iteration (iwgan.engine.trainer.Trainer.run_iteration).

Every op's self time is put in one class, per phase (the method's optimisers' names, the
draws, the moving average, the log readout):

- matmul: mm, bmm, addmm, baddbmm (forward and backward passes apart);
- elementwise: every other op that computes (relu, masks, norms, sums, cdist, ...);
- views/copies: shape and memory bookkeeping (view, expand, stack, copy, empty, vmap's
  batch dims ...), much of it what vmap adds;
- autograd: the engine's own nodes (``*Backward*``, evaluate_function) beyond the ops
  they run;
- optimiser: everything inside ``Optimizer.step`` and ``zero_grad``;
- Python: the phase's wall time not covered by any op (the interpreter, functional_call,
  vmap's Python layer, the trainer).

    python benchmarks/profile_stack.py [--iterations 3] [--members 15] [--methods iwgan ...]
        [--adam torch fused] [--out results/benchmarks/profile_stack.json] [--table]

Prints one table per method and writes the JSON (CPU model, load averages, torch
version with every number). A profile inflates small ops' cost; the split, not the total,
is what it is for (the totals are printed beside an unprofiled timing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from iwgan.core.methods import METHOD_NAMES
from iwgan.data.mixtures import MIXTURES, PRESETS
from iwgan.engine.config import make_config
from iwgan.engine.devices import cpu_model
from iwgan.engine.records import git_state, now
from iwgan.experiments.throughput import MixtureStepper
from iwgan.files import write_json

OUT = Path("results") / "benchmarks" / "profile_stack.json"
CELLS = [(m, p) for p in PRESETS for m in MIXTURES]
MATMUL = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm"}
VIEWS = {"aten::view", "aten::reshape", "aten::_unsafe_view", "aten::expand", "aten::t",
         "aten::transpose", "aten::permute", "aten::as_strided", "aten::squeeze",
         "aten::unsqueeze", "aten::slice", "aten::select", "aten::detach", "aten::alias",
         "aten::_add_batch_dim", "aten::_remove_batch_dim", "aten::movedim",
         "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::zeros",
         "aten::zeros_like", "aten::stack", "aten::cat", "aten::copy_", "aten::clone",
         "aten::contiguous", "aten::to", "aten::_to_copy", "aten::lift_fresh",
         "aten::expand_as", "aten::flatten", "aten::unbind", "aten::split", "aten::narrow",
         "aten::resize_", "aten::result_type", "aten::_reshape_alias", "aten::view_as",
         "aten::fill_", "aten::zero_", "aten::ones_like", "aten::new_zeros",
         "aten::new_empty_strided", "aten::_has_compatible_shallow_copy_type",
         "aten::is_nonzero", "aten::item", "aten::_local_scalar_dense", "aten::numpy_T",
         "aten::broadcast_tensors", "aten::set_", "detach"}
CLASSES = ("matmul (forward)", "matmul (backward)", "elementwise (forward)",
           "elementwise (backward)", "views/copies", "autograd", "optimiser", "Python")


def members(method, k, adam="torch"):
    return [make_config("converged", method=method, mixture=CELLS[i % 6][0],
                        preset=CELLS[i % 6][1], seed=i // 6, threads=1, adam=adam)
            for i in range(k)]


def labelled(stepper) -> None:
    """Wrap the trainer's phases and bookkeeping in record_function labels."""
    ms = stepper.trainer.members

    def wrap(obj, name, label):
        inner = getattr(obj, name)

        def call(*args, **kwargs):
            lab = label(*args) if callable(label) else label
            with record_function(lab):
                return inner(*args, **kwargs)
        setattr(obj, name, call)

    wrap(ms, "step", lambda phase, *a: f"phase:{phase.optimizer}")
    wrap(ms, "draw", "phase:draw")
    wrap(ms, "update_average", "phase:ema")


def classify(event, in_opt: bool, in_bwd: bool) -> str:
    name = event.name
    if in_opt:
        return "optimiser"
    if name in MATMUL:
        return "matmul (backward)" if in_bwd else "matmul (forward)"
    if name.startswith("autograd::") or "Backward" in name:
        return "autograd"
    if name in VIEWS or not name.startswith("aten::"):
        return "views/copies"
    return "elementwise (backward)" if in_bwd else "elementwise (forward)"


def breakdown(events, iterations: int) -> dict:
    """{phase: {class: ms per iteration}} from the profiler's event tree."""
    out: dict = defaultdict(lambda: defaultdict(float))

    def walk(ev, phase, in_opt, in_bwd):
        in_opt = in_opt or ev.name.startswith(("Optimizer.step", "Optimizer.zero_grad"))
        in_bwd = in_bwd or ev.name.startswith("autograd::engine::evaluate_function")
        if not ev.name.startswith("phase:"):
            out[phase][classify(ev, in_opt, in_bwd)] += ev.self_cpu_time_total / 1e3
        for child in ev.cpu_children:
            walk(child, phase, in_opt, in_bwd)

    for ev in events:
        if ev.cpu_parent is not None:
            continue
        if ev.name.startswith("phase:"):
            phase = ev.name[len("phase:"):]
            covered = sum(c.cpu_time_total for c in ev.cpu_children)
            out[phase]["Python"] += (ev.cpu_time_total - covered) / 1e3
            for child in ev.cpu_children:
                walk(child, phase, False, False)
        else:
            walk(ev, "log readout and other", False, False)
    return {p: {c: round(v / iterations, 3) for c, v in cls.items()} for p, cls in out.items()}


def profile_method(method: str, k: int, iterations: int, adam: str) -> dict:
    stepper = MixtureStepper(members(method, k, adam))
    for _ in range(2):
        stepper.iteration()
    start = time.perf_counter()
    for _ in range(iterations):
        stepper.iteration()
    plain_ms = 1e3 * (time.perf_counter() - start) / iterations
    labelled(stepper)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(iterations):
            stepper.iteration()
        profiled_ms = 1e3 * (time.perf_counter() - start) / iterations
    phases = breakdown(prof.events(), iterations)
    totals = defaultdict(float)
    for cls in phases.values():
        for c, v in cls.items():
            totals[c] += v
    return {"method": method, "members": k, "iteration_ms_unprofiled": round(plain_ms, 2),
            "iteration_ms_profiled": round(profiled_ms, 2), "phases": phases,
            "totals_ms": {c: round(totals[c], 3) for c in CLASSES if c in totals},
            "adam": adam}


def markdown(record: dict) -> str:
    """The JSON's breakdown as docs/throughput.md shows it: % of the profiled time per
    class, per method and Adam arithmetic, and each method's share per phase."""
    lines = ["| method | adam | stack ms/it. (unprofiled) | " + " | ".join(CLASSES) + " |",
             "|---|---|---|" + "---|" * len(CLASSES)]
    for r in record["methods"]:
        total = sum(r["totals_ms"].values())
        lines.append(f"| {r['method']} | {r['adam']} | {r['iteration_ms_unprofiled']:.0f} | "
                     + " | ".join(f"{100 * r['totals_ms'].get(c, 0) / total:.0f} %"
                                  for c in CLASSES) + " |")
    lines += ["", "| method (adam=torch) | phase | share of the iteration | " +
              " | ".join(CLASSES) + " |", "|---|---|---|" + "---|" * len(CLASSES)]
    for r in record["methods"]:
        if r["adam"] != "torch":
            continue
        total = sum(r["totals_ms"].values())
        for phase, cls in r["phases"].items():
            part = sum(cls.values())
            if part / total < 0.05:
                continue
            lines.append(f"| {r['method']} | {phase} | {100 * part / total:.0f} % | " + " | ".join(
                f"{100 * cls.get(c, 0) / part:.0f} %" for c in CLASSES) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--members", type=int, default=15)
    p.add_argument("--methods", nargs="+", default=list(METHOD_NAMES))
    p.add_argument("--adam", nargs="+", default=["torch", "fused"],
                   help="Adam's arithmetic(s) to profile (default: both)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--table", action="store_true",
                   help="print the breakdown of --out as docs/throughput.md's tables; no run")
    args = p.parse_args(argv)
    if args.table:
        print(markdown(json.loads(args.out.read_text())))
        return 0
    torch.set_num_threads(1)
    record = {"profile": "converged", "members": args.members, "iterations": args.iterations,
              "torch": torch.__version__, "cpu_model": cpu_model(),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "cpu_count": os.cpu_count(), "threads": 1, "platform": platform.platform(),
              "load_average_at_start": list(os.getloadavg()), "started": now(),
              **git_state(), "methods": []}
    for method, adam in [(m, a) for m in args.methods for a in args.adam]:
        r = profile_method(method, args.members, args.iterations, adam)
        record["methods"].append(r)
        total = sum(r["totals_ms"].values())
        print(f"\n{method}: K = {args.members}, {r['iteration_ms_unprofiled']} ms per stack "
              f"iteration unprofiled, {r['iteration_ms_profiled']} profiled (adam={adam})")
        for c, v in r["totals_ms"].items():
            print(f"  {c:24s} {v:9.2f} ms  {100 * v / total:5.1f} %")
        for phase, cls in r["phases"].items():
            print(f"  [{phase}] " + ", ".join(f"{c} {v:.2f}" for c, v in cls.items()))
    record["load_average_at_end"] = list(os.getloadavg())
    record["finished"] = now()
    write_json(args.out, record)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
