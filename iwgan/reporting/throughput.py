"""reports/throughput.md, rebuilt from results/throughput/*.json alone (one file per
device, written by ``nox -s throughput``): per device, training throughput of every
method and architecture, the suite against the plain reference, stacked runs against
one at a time, the GPU fast path, evaluation costs, and a plot of how the cost grows
with batch size and width. A device with no results file (no GPU was lent) gets a
column that says it waits for one."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from iwgan.reporting.common import markdown_table, rel, save_figure, write_report

GPU_WAIT = "waits for a GPU"
# What a row's precision means (cuDNN runs "fp32" convolutions on TF32 tensor cores by
# default on CUDA: iwgan.experiments.throughput.conv_precision).
PRECISION_TEXT = {"fp32": "fp32", "tf32": "fp32 with TF32 convolutions", "bf16": "bf16"}
OVERHEAD_TARGET = 5.0       # % over the plain reference
# (profile, K, speed-up) of the targets: on CPU per-member throughput at the quick width
# >= 2x one seed at a time (any K); on a GPU K = 16 at the paper width >= 0.8 K.
STACKED_TARGETS = {"cpu": ("quick", None, 2.0), "cuda": ("paper", 16, 0.8 * 16)}


def load(results: Path) -> dict[str, dict]:
    files = sorted((Path(results) / "throughput").glob("*.json"))
    return {f.stem: json.loads(f.read_text()) for f in files}


def fmt(v, digits=3, na="n/a"):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return na
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def param(name: str) -> list[str]:
    m = re.search(r"\[(.*)\]", name)
    return m.group(1).split("-") if m else []


def by_test(records, test):
    return [r for r in records if r["name"].split("[")[0] == test]


def gpu_note(data: dict) -> list[str]:
    if any(d["device_kind"] == "cuda" for d in data.values()):
        return []
    return [f"**GPU: {GPU_WAIT}.** No GPU was lent to the run that produced these results, "
            "so every GPU number (the fast path, MFU, the K = 16 paper-width stacked "
            "runs, the ≥ 3× CelebA target) is missing, not zero. On a CUDA machine, "
            "`nox -s throughput` writes `results/throughput/cuda-<gpu>.json` and this "
            "report gains a section for it.", ""]


def manifest_lines(d: dict) -> list[str]:
    m = d["manifest"]
    la, lb = m.get("load_average_at_start"), m.get("load_average_at_end")
    cpu = (f", {m['cpu_model']}, {m['cpu_capability']}" if m.get("cpu_model") else "")
    return [f"Device: {m['device']} ({m['cpu_count']} CPUs{cpu}, torch "
            f"{m['packages']['torch']}, "
            f"{m['platform']}); commit `{m['commit'][:12]}`{' (dirty)' if m['dirty'] else ''}; "
            f"started {m['started']}, finished {m.get('finished', 'n/a')}.",
            f"Load average (1, 5, 15 min) at start {la}, at end {lb} ("
            + (f"the run waited {m.get('waited_for_load_s', 0)} s for the 1-minute load to "
               f"fall below {m['max_load_asked']}" if m.get("max_load_asked") is not None
               else "the run did not wait for the load: a machine of its own")
            + "). Every benchmark row in the JSON carries its own load averages before and "
            "after; the tables give the 1-minute one before it.",
            *(["Fast path: " + "; ".join(m["fast_path_notes"]) + "."]
              if m.get("fast_path_notes") else []), *earlier_lines(d), ""]


def earlier_lines(d: dict) -> list[str]:
    """Benchmarks kept from earlier runs when a ``-k`` subset re-ran the rest."""
    runs: dict = {}
    for r in d["benchmarks"]:
        if "earlier_run" in r:
            e = r["earlier_run"]
            cpu = ", ".join(v for v in (e.get("cpu_model"), e.get("cpu_capability")) if v)
            runs.setdefault((e["commit"], e["started"], e["command"], cpu), []).append(
                r["name"])
    return [f"{len(names)} benchmark{'s come' if len(names) > 1 else ' comes'} from an "
            f"earlier run (`{cmd}` at commit "
            f"`{commit[:12]}`, started {started}{f'; CPU {cpu}' if cpu else ''}); the run "
            "above re-measured a `-k` subset and kept them."
            for (commit, started, cmd, cpu), names in sorted(runs.items())]


def campaign_section(d: dict) -> list[str]:
    """The stages of the campaign that wrote this file (benchmarks/gpu_campaign.py): what
    each ran, in what time against its estimate and limit, and what did not fit."""
    c = d["manifest"].get("campaign")
    if not c:
        return []
    rows = []
    for s in c["stages"]:
        what = (f"{s.get('measured', 0)} measured, {s.get('not_run', 0)} not run"
                if s.get("kind") == "benchmarks" and "measured" in s else "")
        plan = s.get("plan") or {}
        if plan.get("fits"):
            what = (f"paper profile, {plan['iterations']:,} iterations, {plan['seeds']} seeds: "
                    + "; ".join(f"{' '.join(b['methods'])} ({b['preset']})"
                                for b in plan["blocks"])
                    + ("; left out: " + "; ".join(f"{' '.join(b['methods'])} ({b['preset']})"
                                                  for b in plan["left_out"])
                       if plan["left_out"] else ""))
        rows.append({"stage": s["name"], "status": s["status"], "ran": what,
                     "seconds": fmt(s.get("seconds"), na="–"),
                     "estimated s": fmt(s.get("estimate_s"), na="–"),
                     "limit s": fmt(s.get("limit_s"), na="–")})
    packages = "; ".join(f"{k} {v}" for k, v in c.get("packages", {}).items())
    return ["### The campaign that measured this device", "",
            f"`benchmarks/gpu_campaign.py` ({c['scale']} scale; docs/gpu_campaign.md): "
            f"{c.get('wall_s', 'n/a')} s of a {c['budget_s']:.0f}-second budget, started "
            f"{c['started']}. Its stages in order, each in a process of its own with a time "
            "limit; the estimates were made before it ran (the per-op and FLOP model of "
            f"`benchmarks/campaign_cost.py`, then its own measurements). Packages: {packages}.",
            "", markdown_table(pd.DataFrame(rows)), ""]


def iteration_row(r, method: str, networks: str) -> dict:
    return {"method": method, "networks": networks, "batch": r["batch_size"],
            "batches/it.": r["samples_per_iteration"] // r["batch_size"],
            "step ms": fmt(r["step_ms"]), "samples/s": fmt(r["samples_per_s"]),
            "GFLOP/s": fmt(r["gflops_per_s"]), "MFU %": fmt(r.get("mfu_pct")),
            "peak memory MiB": fmt(r["peak_memory_mib"]), "threads": r["threads"],
            "load (1 min)": r["loadavg_before"][0]}


def training_table(records) -> list[str]:
    rows = []
    for r in by_test(records, "test_mixture_iteration"):
        if r["status"] != "ok":
            continue
        _, preset, method = param(r["name"])
        rows.append(iteration_row(r, method, f"mixture MLP, width {r['width']:g}"))
    for r in by_test(records, "test_image_iteration"):
        _, arch, method = param(r["name"])
        if r["status"] != "ok":
            rows.append({"method": method, "networks": f"{arch} (Appendix D)",
                         "step ms": f"not run: {r['reason']}"})
            continue
        precision = PRECISION_TEXT.get(r.get("precision", "fp32"), r.get("precision"))
        rows.append(iteration_row(r, method, f"{arch} (Appendix D), {precision}"))
    if not rows:
        return []
    df = pd.DataFrame(rows).fillna("")
    return ["### One training iteration", "",
            "An iteration is the method's phases once (mixtures: the profile's n_critic — "
            "paper width 5, quick width 2; images: 1 critic + 1 generator step); samples/s "
            "counts the data points drawn (batches per iteration × batch / seconds). Step "
            "ms is the time of one iteration (median). MFU needs a GPU's peak (n/a on CPU).",
            "", markdown_table(df), ""]


def overhead_table(records) -> list[str]:
    rows = []
    for r in by_test(records, "test_mixture_iteration"):
        if r["status"] != "ok":
            continue
        _, preset, method = param(r["name"])
        ok = r["overhead_pct"] <= OVERHEAD_TARGET
        rows.append({"method": method, "width": f"{r['width']:g}",
                     "suite ms/it.": fmt(r["step_ms"]),
                     "reference ms/it.": fmt(r["reference_step_ms"]),
                     "overhead %": f"{r['overhead_pct']:+.1f}",
                     f"≤ {OVERHEAD_TARGET:g} %": "yes" if ok else "**no**",
                     "pairs": len(r["overhead_pairs"]),
                     "load (1 min)": r["loadavg_before"][0]})
    if not rows:
        return []
    return ["### The suite's iteration against the plain reference", "",
            "`benchmarks/reference_steps.py` writes each method as plainly as PyTorch "
            "allows (raw nn.Sequential, torch.optim.Adam, losses inline, nothing "
            "recomputed). Both run the same seed, networks and batches end to end "
            "(build + iterations), interleaved; the overhead is the median of the paired "
            "time ratios minus 1, so load on the machine hits both alike. Its noise is a "
            "few % on a shared CPU; see docs/throughput.md for what remains and why.", "",
            markdown_table(pd.DataFrame(rows)), ""]


def stacked_table(records, kind) -> list[str]:
    rows = []
    p_target, k_target, s_target = STACKED_TARGETS[kind]
    for r in by_test(records, "test_stacked_members"):
        if r["status"] != "ok":
            continue
        k, method = int(r["params"]["k"]), r["params"]["method"]
        speedup = r["speedup_over_one_at_a_time"]
        target = ""
        if r.get("profile") == p_target and r["gradient"] == "closed_form" and (
                kind == "cpu" or k == k_target):
            target = f"≥ {s_target:g}: {'yes' if speedup >= s_target else '**no**'}"
        rows.append({"method": method, "K": k, "cells": r["cells"],
                     "input gradient": r["gradient"].replace("_", " "),
                     "width": f"{r['width']:g}", "batch": r["batch_size"],
                     "stack ms/it. (all K)": fmt(r["step_ms"]),
                     "per member ms/it.": fmt(r["member_step_ms"]),
                     "one at a time ms/it.": fmt(r["reference_step_ms"]),
                     "per-member speed-up": f"{speedup:.2f}×", "target": target,
                     "load (1 min)": r["loadavg_before"][0]})
    if not rows:
        return []
    df = pd.DataFrame(rows).sort_values(["method", "width", "input gradient", "K"],
                                        kind="stable")
    target = (f"per-member throughput at the quick width ≥ {s_target:g}× one seed at a "
              "time (any K)" if kind == "cpu" else
              f"K = {k_target} at the paper width ≥ {s_target:g}× one seed's throughput")
    return ["### K runs as one stacked model", "",
            "`iwgan.engine.stacking`: the method's losses, written once for one run, "
            "vmapped over K members' stacked parameters (torch.func); members of K ≥ 6 "
            "differ in mixture and preset as well as seed. The per-member speed-up is K × "
            "(one seed at a time: the plain reference loop, autograd penalty) / (the "
            "stack's time), from interleaved pairs; K = 1 is the suite's single run. "
            f"Target: {target}. The sessions stack only where it is faster "
            "(`--stack auto`, `iwgan.engine.stacking.stacking_helps`; docs/stacking.md).",
            "", markdown_table(df), ""]


CONVERGED_TARGETS = {"speed-up": 2.5, "peak": 25.0}   # x today's per member; % of fp32 GEMM
CONVERGED_PATHS = {"before": "today (aa4fd0f): torch.optim.Adam on the stack",
                   "torch": "default: adam=torch (MemberAdam, same bits)",
                   "fused": "fast: adam=fused"}


def converged_table(records) -> list[str]:
    rows = []
    for r in by_test(records, "test_converged_stack"):
        if r["status"] != "ok":
            continue
        peak = r["peak_gflops"]
        for variant, label in CONVERGED_PATHS.items():
            v = r[variant]
            rows.append({"method": r["params"]["method"], "path": label,
                         "per member ms/it.": fmt(v["member_ms"]),
                         "stack ms/it. (K = 15)": fmt(v["stack_ms"]),
                         "× before": f"{v['speedup_over_before']:.2f}×",
                         f"≥ {CONVERGED_TARGETS['speed-up']:g}×":
                             "" if variant == "before" else
                             "yes" if v["speedup_over_before"] >= CONVERGED_TARGETS["speed-up"]
                             else "**no**",
                         "GFLOP/s": fmt(v["gflops"]),
                         "% fp32 GEMM peak": fmt(v["pct_gemm_peak"]),
                         f"≥ {CONVERGED_TARGETS['peak']:g} %":
                             "yes" if v["pct_gemm_peak"] >= CONVERGED_TARGETS["peak"]
                             else "**no**",
                         "% stacked-bmm rate": fmt(v["pct_bmm_peak"]),
                         "GEMM peak GFLOP/s": fmt(peak["gemm_2048"]),
                         "matmuls": r["matmul_precision"], "CPU": r["cpu_model"],
                         "load (1 min)": r["loadavg_before"][0]})
    if not rows:
        return []
    first = next(r for r in by_test(records, "test_converged_stack") if r["status"] == "ok")
    return ["### The converged profile's stacks: before and after", "",
            "K = 15 members at the converged profile (width 0.25, batch 64, n_critic 5, "
            "EMA 0.99, linear schedule, one thread) over the 6 mixture × preset cells: "
            "today's stacked step, the default path and the fast path (`adam=fused`, "
            "torch's fused Adam kernel), timed in rotating order in one process "
            f"({first['pairs']} rounds of {first['iterations_per_call']} iterations); "
            "× before is the median of the rounds' time ratios. GFLOP/s counts one "
            "iteration's FLOPs (torch.utils.flop_counter formulas) over its time; the "
            "peak is this core's fp32 rate measured in the same process just before and "
            "after (the best of the two): a 2048² GEMM, and the stack's own shape, "
            "15 × (64×128 @ 128×128) batched. Targets: ≥ "
            f"{CONVERGED_TARGETS['speed-up']:g}× today's per-member throughput, ≥ "
            f"{CONVERGED_TARGETS['peak']:g} % of the fp32 GEMM peak. Matmul precision: "
            f"{first['matmul_path']}.", "",
            markdown_table(pd.DataFrame(rows)), ""]


def compile_table(records) -> list[str]:
    rows = []
    for r in by_test(records, "test_compiled_single_run_losses"):
        if r["status"] != "ok":
            continue
        rows.append({"run": "iwgan, quick width, one run", "eager ms/it.":
                     fmt(r["eager_step_ms"]), "compiled ms/it.": fmt(r["step_ms"]),
                     "speed-up": f"{r['speedup_over_eager']:.2f}×",
                     "compile s": fmt(r["compile_seconds"]),
                     "pays after (iterations)": fmt(r["break_even_iterations"]),
                     "profile's iterations": fmt(r["profile_iterations"]),
                     "load (1 min)": r["loadavg_before"][0]})
    if not rows:
        return []
    return ["### torch.compile of a single run's losses", "",
            "Whether compiling pays: the speed-up once compiled, against the seconds the "
            "first (compiling) iteration costs; it pays once a run is longer than the "
            "break-even number of iterations. The suite does not compile by default.", "",
            markdown_table(pd.DataFrame(rows)), ""]


def fast_path_table(records, kind) -> list[str]:
    recs = by_test(records, "test_fast_path")
    if not recs:
        return []
    rows = []
    for r in recs:
        p = param(r["name"])
        variant, arch, method = "-".join(p[1:-2]), p[-2], p[-1]
        if r["status"] != "ok":
            rows.append({"variant": variant, "networks": arch, "method": method,
                         "samples/s": f"not run: {r['reason']}"})
            continue
        rows.append({"variant": variant, "networks": arch, "method": method,
                     "samples/s": fmt(r["samples_per_s"]), "step ms": fmt(r["step_ms"]),
                     "speed-up over eager fp32": f"{r['speedup_over_eager']:.2f}×",
                     "MFU %": fmt(r.get("mfu_pct")), "on track": fmt(r["on_track"])})
    df = pd.DataFrame(rows).fillna("")
    if kind == "cpu":
        df = df.drop_duplicates(["variant"]).drop(columns=["networks", "method"])
    return ["### GPU fast path (bf16 autocast, channels_last, torch.compile, CUDA graphs)", "",
            "Target: ≥ 3× eager fp32 samples/s for the CelebA networks on an H100, each "
            "option keeping the loss curves within tolerance of eager fp32 over 300 "
            "iterations (25-step moving averages within 0.1 × |eager| + 0.05 × max|eager|)."
            + (f" **{GPU_WAIT}**: on this CPU every option falls back to eager fp32." if
               kind == "cpu" else ""), "", markdown_table(df), ""]


def evaluation_table(records) -> list[str]:
    names = {"test_frechet_distance_2048": "Fréchet distance, 2,048 dims",
             "test_inception_features": "Inception features (random init)",
             "test_mode_coverage_scorer_2500": "mode-coverage scorer, 2,500 samples",
             "test_w1_exact_2500": "exact W1 (POT), 2,500 vs 2,500"}
    rows = []
    for test, label in names.items():
        for r in by_test(records, test):
            if r["status"] != "ok":
                rows.append({"what": label, "seconds": f"not run: {r['reason']}"})
                continue
            rows.append({"what": label, "seconds": fmt(r["median_s"]),
                         "items/s": fmt(r.get("items_per_s")),
                         "note": r.get("implementation") or r.get("weights") or "",
                         "load (1 min)": r["loadavg_before"][0]})
    if not rows:
        return []
    return ["### Evaluation", "", markdown_table(pd.DataFrame(rows).fillna("")), ""]


def scaling_figure(records, path: Path, title: str) -> bool:
    pts = [r for r in by_test(records, "test_scaling") if r["status"] == "ok"]
    if not pts:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    frame = pd.DataFrame([{"batch size": r["batch_size"], "width": f"width {r['width']:g}",
                           "ms per iteration": r["step_ms"], "samples/s": r["samples_per_s"]}
                          for r in pts])
    for ax, y in zip(axes, ("ms per iteration", "samples/s")):
        sns.lineplot(data=frame, x="batch size", y=y, hue="width", marker="o", ax=ax,
                     legend=ax is axes[0])
    for ax, ylabel in zip(axes, ("ms per iteration", "samples/s")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    save_figure(fig, path)
    return True


def not_run(records) -> list[str]:
    rows = [r for r in records if r["status"] != "ok"]
    if not rows:
        return []
    reasons: dict[str, list[str]] = {}
    for r in rows:
        reasons.setdefault(r["reason"], []).append(r["name"])
    out = ["### Not run here, and why", ""]
    for reason, names in reasons.items():
        out.append(f"- {reason}: {len(names)} benchmark(s) ({', '.join(sorted(names)[:3])}"
                   f"{', …' if len(names) > 3 else ''})")
    return out + [""]


def build_report(results: Path, reports: Path) -> Path:
    results, reports = Path(results), Path(reports)
    data = load(results)
    out = ["# Throughput", "",
           "Rebuilt by `nox -s reports` from `results/throughput/*.json` alone; do not edit. "
           "The numbers come from `nox -s throughput` (pytest-benchmark over "
           "`benchmarks/`; docs/throughput.md says what each benchmark times and how).", ""]
    out += gpu_note(data)
    for slug, d in data.items():
        kind = d["device_kind"]
        records = d["benchmarks"]
        out += [f"## {'CPU' if kind == 'cpu' else 'GPU'}: {d['manifest']['device']} "
                f"(`results/throughput/{slug}.json`)", ""]
        out += manifest_lines(d)
        out += campaign_section(d)
        out += training_table(records)
        out += overhead_table(records)
        out += stacked_table(records, kind)
        out += converged_table(records)
        out += compile_table(records)
        out += fast_path_table(records, kind)
        out += evaluation_table(records)
        fig = reports / "figures" / f"throughput_scaling_{slug}.png"
        if scaling_figure(records, fig, f"iwgan, 1 critic + 1 G/Q step, {slug}"):
            out += ["### Cost against batch size and width", "",
                    f"![iwgan iteration time and samples/s against batch size, per width]"
                    f"({rel(fig, reports)})", "",
                    "iwgan on the mixture MLPs, one critic and one G/Q step per iteration "
                    "(median of 3 rounds).", ""]
        out += not_run(records)
        mem = {r.get("memory_kind") for r in records if r.get("memory_kind")}
        out += [f"Peak memory: {', '.join(sorted(mem))}. On CPU it is the benchmark "
                "process's max RSS (`resource.getrusage`), a running maximum over the "
                "session, so an upper bound for each row; on CUDA, torch's peak allocated "
                "memory since the benchmark started.", ""]
    return write_report(reports / "throughput.md", "\n".join(out))
