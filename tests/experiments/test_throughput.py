"""The throughput session's machinery (iwgan.experiments.throughput), without timing anything: the
CUDA-only options' fallback on CPU, FLOP counting against closed forms, the fast path's
on-track rule, the merge of a ``-k`` subset into earlier results, and a tiny end-to-end
run of ``python -m iwgan throughput``. Speeds themselves are measured in benchmarks/."""

import json
import math
import os

import pytest
import torch
from torch import nn

from iwgan.cli import main
from iwgan.core.losses import autograd_input_gradient, gradient_penalty
from iwgan.experiments.throughput import (
    ImageStepper,
    compare_curves,
    count_flops,
    merge_subset,
    moving_average,
    resolve_fast_path,
)


def test_cuda_only_options_fall_back_to_eager_on_cpu_with_a_message_each():
    used, notes = resolve_fast_path(("bf16", "compile", "cudagraphs"), "cpu")
    assert used == ()
    assert notes == [f"{o} needs CUDA; this cpu run falls back to eager fp32"
                     for o in ("bf16", "compile", "cudagraphs")]
    assert resolve_fast_path((), "cpu") == ((), [])
    with pytest.raises(ValueError, match="unknown fast-path option"):
        resolve_fast_path(("fp8",), "cpu")
    with pytest.raises(ValueError, match="ask for compile as well"):
        resolve_fast_path(("cudagraphs",), "cuda")


def test_an_image_step_asked_for_the_fast_path_on_cpu_runs_eager_fp32():
    stepper = ImageStepper("iwgan", "mnist", batch_size=4, device="cpu",
                           options=("bf16", "channels_last", "compile"), width=0.25)
    assert stepper.used == () and stepper.precision == "fp32" and len(stepper.notes) == 3
    [logs] = stepper.iteration()
    assert logs and all(math.isfinite(v) for v in logs.values())


def test_flops_of_a_linear_layer_are_the_closed_form():
    layer, x = nn.Linear(8, 3), torch.randn(5, 8, requires_grad=True)
    assert count_flops(lambda: layer(x)) == 2 * 5 * 8 * 3
    # forward, then the gradients of the input and of the weight: 3 matmuls of that size
    assert count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 5 * 8 * 3


def test_flops_through_a_gradient_penalty_are_counted():
    critic = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
    real, fake = torch.randn(32, 2), torch.randn(32, 2)
    forward = count_flops(lambda: critic(real))
    eps = torch.rand(32, 1)
    with autograd_input_gradient():
        penalty = count_flops(lambda: gradient_penalty(critic, real, fake, eps).backward())
    assert forward == 2 * 32 * (2 * 16 + 16 * 1)
    assert penalty > 3 * forward    # forward, input gradient, and its backward
    # In closed form: the hidden layer (for the ReLU mask), g W_1, and the two matmuls of
    # its backward (to W_1 and to g, which holds the output weights): 4 matmuls of one size.
    closed = count_flops(lambda: gradient_penalty(critic, real, fake, eps).backward())
    assert closed == 4 * 2 * 32 * 2 * 16


def test_moving_average_and_the_on_track_rule():
    assert moving_average([1.0, 2.0, 3.0, 4.0], window=2) == [1.0, 1.5, 2.5, 3.5]
    eager = {"loss": [1.0] * 30}
    assert compare_curves(eager, eager) == {"loss": 0.0}
    # tolerance 0.1 x |1| + 0.05 x 1 = 0.15: a shift of 0.1 is on track, 0.3 is not
    assert compare_curves(eager, {"loss": [1.1] * 30})["loss"] == pytest.approx(0.1 / 0.15)
    assert compare_curves(eager, {"loss": [1.3] * 30})["loss"] > 1


def test_a_subset_replaces_its_benchmarks_and_keeps_the_others_marked():
    old = {"manifest": {"commit": "abc", "dirty": False, "started": "t0", "command": "x"},
           "benchmarks": [{"name": "a", "median_s": 1.0}, {"name": "b", "median_s": 2.0}]}
    merged = merge_subset(old, [{"name": "b", "median_s": 3.0}])
    assert [r["name"] for r in merged] == ["a", "b"]
    assert merged[0]["earlier_run"]["commit"] == "abc" and merged[0]["median_s"] == 1.0
    assert merged[1] == {"name": "b", "median_s": 3.0}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU machine")
def test_asking_for_cuda_without_it_is_refused(tmp_path, capsys):
    assert main(["throughput", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "torch sees no CUDA device; use --device cpu" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_the_session_end_to_end_on_two_subsets_then_the_report(tmp_path):
    args = ["throughput", "--device", "cpu", "--out", str(tmp_path), "--wait", "0",
            "--max-load", str(10 * (os.cpu_count() or 1))]
    assert main([*args, "-k", "w1_exact"]) == 0
    path = tmp_path / "results" / "throughput" / "cpu.json"
    first = json.loads(path.read_text())
    assert [r["name"] for r in first["benchmarks"]] == ["test_w1_exact_2500"]
    assert first["benchmarks"][0]["status"] == "ok" and first["benchmarks"][0]["median_s"] > 0
    assert {"commit", "packages", "cpu_count", "load_average_at_start"} <= set(first["manifest"])
    assert main([*args, "-k", "mode_coverage_scorer"]) == 0
    second = json.loads(path.read_text())
    names = {r["name"]: r for r in second["benchmarks"]}
    assert set(names) == {"test_w1_exact_2500", "test_mode_coverage_scorer_2500"}
    assert names["test_w1_exact_2500"]["earlier_run"]["started"] == first["manifest"]["started"]
    assert "earlier_run" not in names["test_mode_coverage_scorer_2500"]
    report = (tmp_path / "reports" / "throughput.md").read_text()
    assert "exact W1 (POT), 2,500 vs 2,500" in report and "mode-coverage scorer" in report
    assert "1 benchmark comes from an earlier run" in report


def test_a_command_past_its_time_limit_is_killed_with_its_children(tmp_path):
    """run_group kills the command's whole process group (torch.compile's workers too)."""
    import sys
    import time

    from iwgan.experiments.throughput import TIMED_OUT, run_group

    pid_file = tmp_path / "child.pid"
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    start = time.monotonic()
    assert run_group([sys.executable, "-c", code], timeout=5) == TIMED_OUT
    assert time.monotonic() - start < 30
    child = int(pid_file.read_text())
    for _ in range(50):   # reaped by init once killed
        stat = f"/proc/{child}/stat"
        if not os.path.exists(stat) or open(stat).read().rsplit(") ", 1)[1][0] == "Z":
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the command's child outlived its time limit")
    assert run_group([sys.executable, "-c", "pass"], timeout=30) == 0
    assert run_group([sys.executable, "-c", "raise SystemExit(3)"]) == 3


@pytest.mark.slow
def test_each_benchmark_is_kept_as_it_finishes_as_its_json_would_record_it(tmp_path):
    """benchmarks/conftest.py appends each benchmark and skip to THROUGHPUT_PARTIAL when it
    finishes: the records a run stopped at its limit keeps equal those of its JSON."""
    import subprocess
    import sys

    from iwgan.engine.records import REPO_ROOT
    from iwgan.experiments.throughput import collect, read_partial

    partial, bench = tmp_path / "partial.jsonl", tmp_path / "bench.json"
    env = {**os.environ, "THROUGHPUT_DEVICE": "cpu", "THROUGHPUT_PARTIAL": str(partial)}
    subprocess.run([sys.executable, "-m", "pytest", str(REPO_ROOT / "benchmarks"), "-o",
                    "addopts=", "-p", "no:cacheprovider", "--benchmark-enable",
                    f"--benchmark-json={bench}", "-q", "-k",
                    "test_mode_coverage_scorer_2500 or test_fast_path[cpu-bf16-mnist-iwgan]"],
                   cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    with open(partial, "a") as f:
        f.write('{"kind": "benchmark", "name": "cut off by the ki')   # a kill mid-line
    kept = collect(*read_partial(partial))
    full = collect(json.loads(bench.read_text()), [])
    assert [r["name"] for r in kept] == ["test_fast_path[cpu-bf16-mnist-iwgan]",
                                         "test_mode_coverage_scorer_2500"]
    assert kept[0]["status"] == "not run" and kept[0]["reason"].startswith("needs CUDA")
    assert kept[1] == full[0] and kept[1]["median_s"] > 0 and kept[1]["items_per_s"] > 0


def test_a_benchmark_run_stopped_at_its_limit_returns_what_finished(monkeypatch):
    from iwgan.experiments import throughput

    def stopped(cmd, timeout=None, env=None, **kwargs):   # as if killed after one benchmark
        assert timeout == 7
        with open(env["THROUGHPUT_PARTIAL"], "a") as f:
            f.write(json.dumps({"kind": "benchmark", "name": "test_a", "group": None,
                                "params": {}, "extra_info": {"step_ms": 2.0},
                                "stats": {"median": 0.5, "iqr": 0.1, "min": 0.4,
                                          "rounds": 3}}) + "\n")
        return throughput.TIMED_OUT

    monkeypatch.setattr(throughput, "run_group", stopped)
    rc, records = throughput.run_benchmarks("cpu", (), "test_a or test_b", timeout=7)
    assert rc == throughput.TIMED_OUT
    assert records == [{"name": "test_a", "group": None, "status": "ok", "params": {},
                        "median_s": 0.5, "iqr_s": 0.1, "min_s": 0.4, "rounds": 3,
                        "step_ms": 2.0}]
    monkeypatch.setattr(throughput, "run_group", lambda *a, **k: 2)   # nothing written
    assert throughput.run_benchmarks("cpu", (), "x") == (2, None)
