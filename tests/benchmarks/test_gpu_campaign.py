"""The GPU campaign (benchmarks/gpu_campaign.py) without a GPU: its smoke mode end to end
(every stage, in the device run's order, through the same code, at the CPU's tiny
scale), then merged into a copy of the committed results and reported; the CUDA-only
branches with torch.cuda claimed, as tests/engine/test_devices.py does (this CPU build
refuses CUDA tensors, so every stage that reaches torch's first CUDA allocation is
recorded as failed, and the campaign goes on); the grid's planner on closed-form costs;
the carried wheels; the time estimate of the device run against its budget."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

import iwgan.experiments.common as common
from iwgan.core.methods import METHOD_NAMES
from iwgan.engine.records import SOURCE_COMMIT, SOURCE_DIRTY, read_results

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gpu_campaign",
                                               ROOT / "benchmarks" / "gpu_campaign.py")
campaign = sys.modules["gpu_campaign"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(campaign)
cc = campaign.cc
GPU = "NVIDIA H100 80GB HBM3"
GPU_SLUG = "cuda-nvidia-h100-80gb-hbm3"
# The smoke grid: every method, 2 presets x 2 seeds on one mixture.
SMOKE_RUNS = 4 * len(METHOD_NAMES)


def stage_names(scale):
    return [n for n, _, _ in scale.stages] + ["mode_coverage"] + [n for n, _, _ in scale.extras]


# --- the smoke mode, end to end ---------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    rc = campaign.main(["run", "--smoke", "--out", str(out), "--bundle",
                        str(out / "campaign.tar.gz")])
    return rc, out


@pytest.mark.slow
def test_the_smoke_mode_runs_the_device_runs_stages_in_its_order(smoke):
    rc, out = smoke
    assert rc == 0
    data = json.loads((out / "results" / "throughput" / "cpu.json").read_text())
    record = data["manifest"]["campaign"]
    assert record["scale"] == "smoke" and record["wall_s"] > 0
    names = [s["name"] for s in record["stages"]]
    device = stage_names(campaign.DEVICE)
    assert names == [n for n in device if n in names] and set(device) - set(names) <= {
        "inception", "scaling"}
    assert {s["name"]: s["status"] for s in record["stages"]} == dict.fromkeys(names, "ok")
    assert record["packages"]["pot"].startswith(("0.", "1."))   # POT imports here
    by_name = {r["name"]: r for r in data["benchmarks"]}
    stacked = by_name["test_stacked_members[cpu-quick-4-ali-closed_form]"]
    assert stacked["status"] == "ok" and stacked["k"] == 4 and stacked["step_ms"] > 0
    # the fast path's own CPU branch: recorded as not run, with its reason
    fast = by_name["test_fast_path[cpu-bf16_channels_last_compile-celeba-iwgan]"]
    assert fast["status"] == "not run" and fast["reason"].startswith("needs CUDA")
    grid = next(s for s in record["stages"] if s["name"] == "mode_coverage")
    assert grid["plan"]["fits"] and len(grid["plan"]["blocks"]) == len(campaign.cc.BLOCKS)
    assert "measured on this device" in grid["cost_model"]["source"]["stack ali"]
    rows = read_results(out / "results" / "mode_coverage.csv")
    assert len(rows) == SMOKE_RUNS and set(rows.status) == {"finished"}
    assert set(rows.profile) == {"paper"} and set(rows.iterations) == {4}
    assert set(rows.stacked) == {4}            # each method one stack: 2 presets x 2 seeds
    assert rows.w1.notna().all() and "w1_unavailable" not in rows
    with tarfile.open(out / "campaign.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"results/throughput/cpu.json", "results/mode_coverage.csv",
            "logs/stacked.log", "logs/mode_coverage.log"} <= names


@pytest.mark.slow
def test_the_smokes_results_merge_and_give_the_reports_their_gpu_sections(smoke, tmp_path):
    """Merged into a copy of the committed results, then relabelled as a GPU's (inside
    this test only), the campaign's results give reports/throughput.md its GPU section
    and reports/mode_coverage.md its paper-profile sections naming the device."""
    _, out = smoke
    bundle = out / "campaign.tar.gz"
    results = tmp_path / "results"
    results.mkdir()
    for name in ("mode_coverage.csv", "mode_coverage_curves.csv", "mixtures.json"):
        shutil.copy(ROOT / "results" / name, results / name)
    shutil.copytree(ROOT / "results" / "mode_coverage_samples",
                    results / "mode_coverage_samples")
    committed = read_results(results / "mode_coverage.csv")
    assert campaign.main(["merge", str(bundle), "--into", str(tmp_path)]) == 2  # a smoke run
    assert campaign.main(["merge", str(bundle), "--into", str(tmp_path),
                          "--allow-smoke"]) == 0
    merged = read_results(results / "mode_coverage.csv")
    assert len(merged) == len(committed) + SMOKE_RUNS
    kept = merged.set_index("run_id").loc[committed.run_id]
    assert (kept.hq_pct.values == committed.hq_pct.values).all()
    assert len(list((results / "mode_coverage_samples").glob("paper-*.npy"))) == SMOKE_RUNS
    # relabel: what a GPU's campaign writes
    merged.loc[merged.profile == "paper", "device"] = GPU
    merged.to_csv(results / "mode_coverage.csv", index=False)
    path = results / "throughput" / "cpu.json"
    data = json.loads(path.read_text())
    data["device_kind"], data["manifest"]["device"] = "cuda", GPU
    (results / "throughput" / f"{GPU_SLUG}.json").write_text(json.dumps(data))
    path.unlink()
    from iwgan.reporting import mode_coverage, throughput

    report = throughput.build_report(results, tmp_path / "reports").read_text()
    assert f"## GPU: {GPU} (`results/throughput/{GPU_SLUG}.json`)" in report
    assert "waits for a GPU" not in report
    assert "### The campaign that measured this device" in report
    assert "| mode_coverage | ok | paper profile, 4 iterations, 2 seeds" in report
    report = mode_coverage.build_report(results, tmp_path / "reports").read_text()
    assert f"## paper profile, paper preset, on {GPU}" in report
    assert f"## paper profile, literature preset, on {GPU}" in report
    assert "The profile's own budget is 20,000 iterations: these runs trained 4" in report
    section = report.split(f"## The paper profile on {GPU} beside the quarter-width CPU runs")[1]
    table = section.split("\n## ")[0]
    assert f"| paper | ring | iwgan | paper | {GPU} | 0.05 | 32 | 4 | 2 |" in table
    assert "| paper | ring | iwgan | quick | x86_64 | 0.25 | 64 | 1,500 | 3 |" in table
    assert "| paper | ring | iwgan | converged | x86_64 | 0.25 | 64 | 5,000 | 5 |" in table
    assert (tmp_path / "reports" / "figures" / "mode_coverage_paper_paper.png").exists()


# --- the CUDA-only branches, with torch.cuda claimed ------------------------------------------

@pytest.fixture
def cuda_claimed(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: GPU)


needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(),
                                   reason="checks a machine without CUDA")


@needs_no_cuda
def test_with_cuda_claimed_the_run_asks_torch_for_cuda_and_stops_before_writing(
        cuda_claimed, tmp_path, capsys):
    assert campaign.main(["run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: device 'cuda' cannot be used:") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_without_cuda_the_run_says_to_use_the_smoke_mode(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert campaign.main(["run", "--out", str(tmp_path)]) == 2
    assert "add --smoke for its CPU smoke mode" in capsys.readouterr().err
    assert campaign.main(["run", "--smoke", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert campaign.main(["run", "--smoke", "--stages", "nope", "--out", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == []


@needs_no_cuda
@pytest.mark.slow
def test_with_cuda_claimed_every_stage_is_planned_for_the_gpu_and_failures_are_recorded(
        cuda_claimed, monkeypatch, tmp_path):
    """Past the device check the campaign plans and starts the device run: the results
    file is named after the GPU, the grid is the paper profile on cuda with every method
    one stack; the stages' processes, on this CPU build, fail at their first CUDA tensor,
    and each failure is recorded while the campaign goes on to its record and bundle."""
    monkeypatch.setattr(campaign, "check_device", lambda name: torch.device(name))
    monkeypatch.setattr(common, "check_device", lambda name: torch.device(name))
    out = tmp_path / "out"
    rc = campaign.main(["run", "--out", str(out), "--bundle", str(tmp_path / "b.tar.gz"),
                        "--stages", "stacked", "mode_coverage", "--budget", "400"])
    assert rc == 1
    path = out / "results" / "throughput" / f"{GPU_SLUG}.json"
    data = json.loads(path.read_text())
    assert data["device_kind"] == "cuda" and data["manifest"]["device"] == GPU
    assert data["manifest"]["fast_path_used"] == list(campaign.FAST_PATH_OPTIONS)
    record = data["manifest"]["campaign"]
    status = {s["name"]: s["status"] for s in record["stages"]}
    assert list(status) == stage_names(campaign.DEVICE)
    assert status["stacked"] == "failed (pytest exit 1)"
    assert all(v == "not asked (--stages)" for k, v in status.items()
               if k not in ("stacked", "mode_coverage"))
    stacked = [r for r in data["benchmarks"] if r["name"].startswith("test_stacked_members")]
    assert len(stacked) == 3 * len(METHOD_NAMES) and all(r["status"] == "not run" for r in stacked)
    # the first CUDA call of each (its peak-memory reset) fails on this CPU build
    assert all("cuda" in r["reason"].lower() and "campaign stage stacked" in r["reason"]
               for r in stacked)
    grid = next(s for s in record["stages"] if s["name"] == "mode_coverage")
    plan = grid["plan"]
    assert plan["fits"] and plan["blocks"][0] == {"methods": ["iwgan", "wgan_gp"],
                                                  "preset": "paper"}
    assert grid["cost_model"]["source"]["stack iwgan"].startswith("estimated")
    [inv, *_] = grid["invocations"]
    assert ("--profile paper --methods iwgan wgan_gp" in inv["command"]
            and "--device cuda --stack on" in inv["command"])
    assert inv["exit_code"] == 2 and inv["recorded"] == 0
    planned = plan["invocations"][0]
    assert inv["runs"] == (len(planned["methods"]) * len(planned["presets"]) * 3
                           * plan["seeds"])
    assert grid["status"].startswith("failed")
    assert "torch sees no CUDA device" in (out / "logs" / "mode_coverage.log").read_text()
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        assert f"results/throughput/{GPU_SLUG}.json" in tar.getnames()


@needs_no_cuda
def test_the_device_stages_name_benchmarks_that_exist_on_cuda():
    """Collected as on the GPU (THROUGHPUT_DEVICE=cuda): every benchmark a device stage
    names exists, so none of the device run's selections comes back empty."""
    names = [n.format(d="cuda") for _, ns, _ in (*campaign.DEVICE.stages,
                                                 *campaign.DEVICE.extras) for n in ns]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "-o", "addopts=", "-p",
         "no:cacheprovider", "--collect-only", "-q", "-k", " or ".join(names)],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "THROUGHPUT_DEVICE": "cuda"})
    collected = {line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line}
    exact = {n for n in names if not n.endswith("-")}
    assert exact <= collected, sorted(exact - collected)
    assert any(c.startswith("test_scaling[cuda-") for c in collected)
    assert len(collected) == len(exact) + 9      # the 9 scaling points, nothing else


def test_on_cuda_image_networks_count_mfu_against_the_tf32_peak(cuda_claimed):
    from iwgan.experiments.throughput import conv_precision, peak_flops, results_slug

    assert conv_precision("cuda", "fp32") == "tf32" and conv_precision("cpu", "fp32") == "fp32"
    assert conv_precision("cuda", "bf16") == "bf16"
    assert peak_flops("cuda", "tf32") == 494.7e12 and peak_flops("cuda", "fp32") == 67e12
    assert results_slug("cuda") == GPU_SLUG and results_slug("cpu") == "cpu"


# --- the plan and its estimate ------------------------------------------------------------------

def cost(h=40.0, c=2.0, w1=1.0):
    m = cc.CostModel(w1_s=w1)
    for method in campaign.M:
        m.stack[method], m.single[method] = (h, c), h
        m.image[method] = (h, c, c)
    return m


def test_the_grid_takes_the_largest_budget_then_blocks_in_order_then_seeds():
    scale = cc.GridScale()
    plan = cc.plan_mode_coverage(10_000.0, cost(), scale)
    assert plan["fits"] and plan["iterations"] == 20_000
    first = cc.grid_seconds(cc.BLOCKS[:1], 20_000, 3, cost(), scale)
    assert cc.plan_mode_coverage(first, cost(), scale)["blocks"] == [
        {"methods": ["iwgan", "wgan_gp"], "preset": "paper"}]
    two = cc.grid_seconds(cc.BLOCKS[:2], 20_000, 3, cost(), scale)
    plan = cc.plan_mode_coverage(two + 1, cost(), scale)
    assert len(plan["blocks"]) == 2 and plan["seeds"] == 3
    assert len(plan["left_out"]) == len(cc.BLOCKS) - 2
    assert plan["invocations"] == [{"methods": ["iwgan", "wgan_gp", "ali", "alpha_gan"],
                                    "presets": ["paper"]}]
    every = cc.grid_seconds(cc.BLOCKS, 20_000, 5, cost(), scale)
    plan = cc.plan_mode_coverage(every, cost(), scale)
    assert plan["seeds"] == 5 and plan["left_out"] == []
    assert plan["invocations"] == [{"methods": list(campaign.M),
                                    "presets": ["paper", "literature"]}]
    # less time: a shorter budget, the same for every block
    plan = cc.plan_mode_coverage(first / 3, cost(), scale)
    assert plan["iterations"] < 20_000 and plan["estimate_s"] <= first / 3
    plan = cc.plan_mode_coverage(1.0, cost(), scale)
    assert not plan["fits"] and "the first block" in plan["reason"]


def test_a_third_block_splits_the_grid_into_two_commands_iwgan_first():
    assert cc.invocations(cc.BLOCKS[:3]) == [
        {"methods": ["iwgan", "wgan_gp"], "presets": ["paper", "literature"]},
        {"methods": ["ali", "alpha_gan"], "presets": ["paper"]}]


def test_the_cost_of_a_stack_is_fitted_from_the_devices_measurements():
    records = [{"name": f"test_stacked_members[cuda-paper-{k}-iwgan-closed_form]",
                "status": "ok", "gradient": "closed_form", "profile": "paper", "k": k,
                "params": {"method": "iwgan"}, "step_ms": 30.0 + 2.5 * k + (k == 1) * 5}
               for k in (1, 4, 16)]
    records.append({"name": "test_w1_exact_2500", "status": "ok", "median_s": 0.8})
    measured = cc.measured_cost(records, cost())
    assert measured.stack["iwgan"] == pytest.approx((30.0, 2.5))
    assert measured.single["iwgan"] == 37.5 and measured.w1_s == 0.8
    assert measured.stack["ali"] == (40.0, 2.0)          # not measured: the estimate
    assert "measured" in measured.source["stack iwgan"] and "w1" in measured.source
    # W1 of n x m points costs n m / 2,500^2 of the 2,500-point one: the final one at
    # 2,500 a side, and curve_points + 1 at 500 a side
    assert measured.eval_s(2500, 0) == pytest.approx(0.8 * (1 + 1 / 25) + cc.EVAL_OTHER_S)
    assert measured.eval_s(300, 4) == pytest.approx(
        0.8 * (300 ** 2 + 5 * 300 * 500) / 2500 ** 2 + cc.EVAL_OTHER_S)


def test_the_device_runs_estimate_fits_its_budget_and_plans_a_grid(estimated):
    est = campaign.estimate_run(campaign.DEVICE, campaign.DEVICE.budget_s, estimated)
    assert est["grid"]["fits"]
    assert est["total_s"] <= campaign.DEVICE.budget_s - campaign.RESERVE_S
    assert list(est["stages"]) == [n for n, _, _ in campaign.DEVICE.stages]


def test_counted_ops_grow_with_the_members_own_draws_only():
    one, two, three, four = (cc.count_ops("ali", k) for k in (1, 2, 3, 4))
    assert two[1] == three[1] == four[1] > one[1]   # views: the same for any stacked K
    assert three[0] - two[0] == four[0] - three[0] > 0   # kernels: linear in K
    assert four[0] - two[0] < 0.2 * two[0]          # a member's own draws, a few ops


# --- the carried wheels, and a copy without .git ---------------------------------------------

def fake_wheel(folder: Path, dist="iwgan_fake_pkg", version="1.0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{dist}/__init__.py", "VALUE = 42\n")
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\n"
                                       f"Version: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                                    "Root-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def test_missing_packages_come_from_the_carried_wheels_or_are_named_missing(
        monkeypatch, tmp_path):
    monkeypatch.setattr(campaign, "CARRIED", {"iwgan-fake-pkg": "iwgan_fake_pkg",
                                              "iwgan-absent-pkg": "iwgan_absent_pkg"})
    wheels = tmp_path / "wheels"
    fake_wheel(wheels)
    (wheels / campaign.SOURCE_FILE).write_text(json.dumps({"commit": "abc123", "dirty": False}))
    monkeypatch.setattr(campaign, "git_state", lambda: {"commit": "unknown", "dirty": False})
    env = {"PYTHONPATH": str(ROOT)}
    status = campaign.provide_packages(wheels, tmp_path / "site", env)
    assert status["iwgan-fake-pkg"] == "1.0 (carried wheel iwgan_fake_pkg-1.0-py3-none-any.whl)"
    assert status["iwgan-absent-pkg"].startswith("missing (ModuleNotFoundError")
    assert "its numbers stay empty" in status["iwgan-absent-pkg"]
    assert env[SOURCE_COMMIT] == "abc123" and env[SOURCE_DIRTY] == "0"
    assert str(tmp_path / "site") not in sys.path   # this process's path is left as it was
    sys.modules.pop("iwgan_fake_pkg", None)
    child = subprocess.run([sys.executable, "-c", "import iwgan_fake_pkg as p; print(p.VALUE)"],
                           env={**os.environ, **env}, capture_output=True, text=True)
    assert child.stdout.strip() == "42"
    assert campaign.provide_packages(None, tmp_path / "s2", {})["iwgan-absent-pkg"].endswith(
        "with this reason in their rows")


def test_prepare_downloads_the_gpu_pythons_wheels_and_records_the_commit(monkeypatch,
                                                                          tmp_path):
    calls = []

    real_run = subprocess.run

    def download(cmd, **kwargs):
        if cmd[:4] != [sys.executable, "-m", "pip", "download"]:
            return real_run(cmd, **kwargs)     # git, for the commit
        calls.append(cmd)
        dist = cmd[-1].split("==")[0].replace("-", "_")
        fake_wheel(Path(cmd[cmd.index("-d") + 1]), dist, cmd[-1].split("==")[1])
        return subprocess.CompletedProcess(cmd, 0)

    wheels = tmp_path / ".whl"
    fake_wheel(wheels, "pot", "0.0.1")                   # an older version: replaced
    monkeypatch.setattr(campaign.subprocess, "run", download)
    assert campaign.main(["prepare", "--wheels", str(wheels)]) == 0
    assert len(calls) == 2
    for cmd, dist in zip(calls, ("pot", "pytorch-fid")):
        assert cmd[cmd.index("--python-version") + 1] == "3.12"
        assert "--only-binary=:all:" in cmd and "--no-deps" in cmd
        assert "manylinux2014_x86_64" in cmd
        assert cmd[-1] == f"{dist}=={campaign.metadata.version(dist)}"
    assert sorted(campaign._dist(w) for w in wheels.glob("*.whl")) == ["pot", "pytorch-fid"]
    source = json.loads((wheels / campaign.SOURCE_FILE).read_text())
    assert source["commit"] != "unknown" and "dirty" in source
    calls.clear()                                        # again: only the commit is renewed
    assert campaign.main(["prepare", "--wheels", str(wheels)]) == 0 and calls == []


def test_a_bundle_without_results_is_refused(tmp_path, capsys):
    assert campaign.main(["merge", str(tmp_path / "nope.tar.gz")]) == 2
    (tmp_path / "empty").mkdir()
    assert campaign.main(["merge", str(tmp_path / "empty")]) == 2
    assert "no results/ folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def estimated():
    return cc.estimated_cost()


def test_the_plan_command_prints_every_stage_and_the_full_grids_cost(estimated, monkeypatch,
                                                                      capsys):
    monkeypatch.setattr(cc, "estimated_cost", lambda: estimated)
    assert campaign.main(["plan"]) == 0
    text = capsys.readouterr().out
    for name in stage_names(campaign.DEVICE):
        assert f"  {name}" in text
    assert "the whole paper-profile grid" in text


def test_a_stage_record_keeps_pytests_first_error(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("collected 2\nE   RuntimeError: Torch not compiled with CUDA enabled\n"
                   "E   second\n1 failed in 0.1s\n")
    assert campaign.first_error(log) == "RuntimeError: Torch not compiled with CUDA enabled"


def test_results_rows_and_curves_merge_by_run_id(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    from iwgan.engine.records import upsert_results

    upsert_results(dst / "mode_coverage.csv", [
        {"run_id": "a", "method": "iwgan", "mixture": "ring", "preset": "paper", "seed": 0,
         "profile": "quick", "status": "finished", "w1": 0.5}])
    upsert_results(src / "mode_coverage.csv", [
        {"run_id": "b", "method": "iwgan", "mixture": "ring", "preset": "paper", "seed": 0,
         "profile": "paper", "status": "finished", "w1": float("nan"),
         "w1_unavailable": "W1 not computed: POT is not installed here"}])
    campaign.merge_results(src, dst)
    df = pd.read_csv(dst / "mode_coverage.csv")
    assert list(df.run_id) == ["b", "a"] and df.w1.isna().tolist() == [True, False]
    assert df.w1_unavailable.iloc[0].startswith("W1 not computed")


@pytest.mark.slow
def test_out_of_time_stages_are_recorded_as_not_fitting_and_a_cut_grid_as_timed_out(
        monkeypatch, tmp_path):
    """With 3 s left at every stage: each benchmark stage is skipped as not fitting (its
    benchmarks recorded as not run, with that reason); the grid, planned on a cost model
    that says it fits, is killed at its 3-s limit; the record and bundle are written."""
    monkeypatch.setattr(campaign.Campaign, "left", lambda self: 3.0)
    monkeypatch.setattr(cc, "estimated_cost", lambda: cost(h=0.01, c=0.001, w1=0.001))
    monkeypatch.setattr(cc, "PROCESS_START_S", 0.0)
    out = tmp_path / "out"
    assert campaign.main(["run", "--smoke", "--out", str(out), "--bundle",
                          str(tmp_path / "b.tar.gz")]) == 1
    data = json.loads((out / "results" / "throughput" / "cpu.json").read_text())
    stages = {s["name"]: s for s in data["manifest"]["campaign"]["stages"]}
    for name, _, _ in (*campaign.SMOKE.stages, *campaign.SMOKE.extras):
        assert stages[name]["status"].startswith("did not fit: estimated"), name
    not_run = {r["name"]: r["reason"] for r in data["benchmarks"]}
    assert not_run["test_stacked_members[cpu-quick-4-ali-closed_form]"].startswith(
        "did not fit") and all(r["status"] == "not run" for r in data["benchmarks"])
    grid = stages["mode_coverage"]
    assert grid["plan"]["fits"] and grid["invocations"][0]["exit_code"] == campaign.TIMED_OUT
    assert grid["status"] == f"timed out: 0 of {SMOKE_RUNS} runs recorded"
    assert "$ python -m iwgan mode-coverage --profile paper" in (
        out / "logs" / "mode_coverage.log").read_text()
    assert (tmp_path / "b.tar.gz").exists()


def test_while_the_grid_runs_each_finished_stack_reaches_the_bundle(tmp_path):
    """A kill from outside the campaign (the device call's own limit) keeps the runs
    written so far: the bundle follows results/mode_coverage.csv while the grid runs."""
    import time
    from types import SimpleNamespace

    bundle, csv = tmp_path / "b.tar.gz", tmp_path / "results" / "mode_coverage.csv"
    me = SimpleNamespace(args=SimpleNamespace(bundle=bundle), out=tmp_path)
    with campaign.Campaign.bundling(me, csv, every=0.05):
        time.sleep(0.3)
        assert not bundle.exists()                   # nothing finished yet
        csv.parent.mkdir()
        csv.write_text("run_id\na\n")
        for _ in range(100):
            if bundle.exists():
                break
            time.sleep(0.05)
    with tarfile.open(bundle) as tar:
        assert tar.extractfile("results/mode_coverage.csv").read() == b"run_id\na\n"
