"""K members trained as one stacked model (iwgan.engine.stacking) are K single runs.

In float64, where rounding differences stay ~1e-16 and cannot grow into anything visible
in 20 iterations, every logged loss and every final metric of each member equals its
single run's to 1e-9 (relative): the same initial weights, the same random draws in the
same order, the same losses and updates; also for members that differ in mixture and
preset, and for the convergence experiment's curves and summary row. In float32, as the
suite trains, vmapped matmuls and reductions round differently from unbatched ones and
GAN training amplifies that over iterations; after 20 iterations at width 0.1 the stated
tolerance is 1e-3 relative on W1, reconstruction error and latent MMD, 1 point on HQ %
(3 of 300 samples) and 1 on modes."""

import pytest
import torch

from iwgan.cli import main as main_cli
from iwgan.engine.config import make_config, make_image_config
from iwgan.engine.records import read_results
from iwgan.engine.stacking import Members, check_stackable, plan_stacks
from iwgan.engine.trainer import train
from iwgan.experiments.convergence import Convergence, ConvergenceOptions
from iwgan.experiments.mode_coverage import evaluate, run_mode_coverage
from iwgan.experiments.skeleton import run_unit
from tests.engine.members import assert_members_are_single_runs, close

VARIANTS = [("iwgan", {}), ("wgan_gp", {}), ("gan", {}), ("ali", {}), ("bigan", {}),
            ("alpha_gan", {}), ("alpha_gan", {"adversarial_loss": "non_saturating"})]
# Members that differ in seed, mixture and preset.
MEMBERS = [(0, "ring", "paper"), (1, "grid", "literature"), (2, "spiral", "paper")]


def config(method, options, seed=0, mixture="ring", preset="paper", **kw):
    kw = {"iterations": 20, **kw}
    return make_config("quick", method=method, options=options, seed=seed, mixture=mixture,
                       preset=preset, width=0.1, batch_size=32, log_every=5,
                       eval_samples=300, **kw)


@pytest.mark.parametrize(("method", "options"), VARIANTS)
def test_in_float64_a_stack_is_its_members_single_runs(float64, method, options):
    assert_members_are_single_runs([config(method, options, s, x, p) for s, x, p in MEMBERS])


@pytest.mark.parametrize("method", ["iwgan", "wgan_gp"])
def test_in_float32_a_stack_matches_single_runs_within_tolerance(method):
    cfgs = [config(method, {}, s) for s in (0, 1)]
    for cfg, member in zip(cfgs, train(cfgs)):
        ours, _ = evaluate(cfg, member.models)
        theirs, _ = evaluate(cfg, train(cfg)[0].models)
        assert abs(ours["modes"] - theirs["modes"]) <= 1
        assert abs(ours["hq_pct"] - theirs["hq_pct"]) <= 1.0
        for key in ("w1", "recon_error", "latent_mmd"):
            assert close(theirs[key], ours[key], 1e-3), (cfg.seed, key, theirs[key], ours[key])


def test_a_stacked_members_optimiser_state_is_its_single_runs(float64):
    cfgs = [config("iwgan", {}, s, iterations=3) for s in (0, 1)]
    stacked = train(cfgs)
    single = train(cfgs[1])[0]
    for name, state in single.optimizer_state.items():
        ours = stacked[1].optimizer_state[name]["state"]
        for idx, s in state["state"].items():
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.allclose(s[key], ours[idx][key], rtol=1e-9, atol=1e-15)


TIMES = {"train_seconds", "eval_seconds", "eval_overhead_pct", "final_eval_seconds",
         "analysis_seconds", "stacked"}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["iwgan", "wgan_gp"])
def test_in_float64_a_stacked_convergence_run_is_its_members_single_runs(float64, method,
                                                                       tmp_path):
    opts = ConvergenceOptions(eval_every=5, gap_steps=2, gap_samples=100, w1_samples=100,
                              decomposition_samples=50)
    cfgs = [make_config("tiny", method=method, seed=s, mixture=x, iterations=10, log_every=1)
            for s, x in ((0, "ring"), (1, "grid"))]
    stacked = run_unit(cfgs, Convergence(tmp_path / "stacked", opts))
    for cfg, (row, curve) in zip(cfgs, stacked):
        [(single_row, single_curve)] = run_unit([cfg], Convergence(tmp_path / "single", opts))
        assert row["stacked"] == 2 and single_row["stacked"] == 1
        assert row.keys() == single_row.keys()
        for key, theirs in single_row.items():
            if isinstance(theirs, float) and key not in TIMES:
                assert close(theirs, row[key], 1e-9, 1e-12), (cfg.seed, key)
        assert len(curve) == len(single_curve) > 0
        for a, b in zip(single_curve.itertuples(), curve.itertuples()):
            assert (a.metric, a.iteration) == (b.metric, b.iteration)
            assert close(a.value, b.value, 1e-9, 1e-12), (cfg.seed, a.metric, a.iteration)


def test_auto_stacks_a_methods_cells_only_where_it_is_faster():
    quick = [make_config("quick", method=m, seed=s, mixture=x) for m in ("iwgan", "ali")
             for x in ("ring", "grid") for s in (0, 1)]
    units = plan_stacks(quick, "auto")
    assert [len(u) for u in units] == [4, 4]
    assert [{c.method for c in u} for u in units] == [{"iwgan"}, {"ali"}]
    assert [len(u) for u in plan_stacks(quick, "auto", max_members=3)] == [3, 1, 3, 1]
    # One run, or the paper width on CPU: one run at a time.
    for cfgs in ([make_config("quick", seed=0)],
                 [make_config("paper", seed=s) for s in (0, 1)]):
        units = plan_stacks(cfgs, "auto")
        assert [len(u) for u in units] == [1] * len(cfgs)
    assert [len(u) for u in plan_stacks([make_config("paper", seed=s, device="cuda")
                                         for s in (0, 1)], "auto")] == [2]
    assert [len(u) for u in plan_stacks(quick, "off")] == [1] * 8
    assert [len(u) for u in plan_stacks([make_config("paper", seed=s) for s in (0, 1)],
                                        "on")] == [2]
    # Runs of different budgets never share a model.
    mixed = [make_config("quick", seed=0), make_config("quick", seed=1, iterations=40)]
    assert [len(u) for u in plan_stacks(mixed, "on")] == [1, 1]
    with pytest.raises(ValueError, match="auto, on, off"):
        plan_stacks(quick, "sometimes")


def test_members_of_different_shapes_or_settings_are_refused_naming_the_difference():
    with pytest.raises(ValueError, match=r"width \(0.25 vs 0.5\)"):
        check_stackable([make_config("quick"), make_config("quick", seed=1, width=0.5)])
    with pytest.raises(ValueError, match="distinct runs"):
        check_stackable([make_config("quick"), make_config("quick")])


def test_networks_with_running_statistics_are_not_stacked():
    cfgs = [make_image_config("celeba", "smoke", seed=s) for s in (0, 1)]
    with pytest.raises(ValueError, match="running statistics"):
        Members(cfgs)
    with pytest.raises(ValueError, match="running statistics"):
        plan_stacks(cfgs, "on")


@pytest.mark.slow
def test_the_mode_coverage_grid_stacks_by_default_and_writes_a_row_and_record_per_run(
        tmp_path):
    configs = [make_config("tiny", method="iwgan", seed=s) for s in (0, 1)]
    rows = run_mode_coverage(configs, tmp_path)
    assert sorted(r["seed"] for r in rows) == [0, 1]
    for row, cfg in zip(sorted(rows, key=lambda r: r["seed"]), configs):
        assert row["status"] == "finished" and row["stacked"] == 2
        assert row["run_id"] == cfg.run_id and row["config_hash"] == cfg.hash()
        for name in ("config.json", "manifest.json", "log.jsonl", "metrics.json",
                     "samples.npy", "checkpoint.pt"):
            assert (tmp_path / "runs" / cfg.run_id / name).exists(), name
    rows = run_mode_coverage(configs[:1], tmp_path, stack="on")
    assert rows[0]["stacked"] == 1      # a single run is not stacked


@pytest.mark.slow
def test_the_convergence_session_stacks_and_the_report_builds(tmp_path):
    args = ["convergence", "--profile", "tiny", "--seeds", "2", "--mixtures", "ring",
            "--methods", "iwgan", "--out", str(tmp_path), "--jobs", "1", "--eval-every",
            "3", "--gap-steps", "2", "--w1-samples", "150"]
    assert main_cli(args) == 0
    df = read_results(tmp_path / "results" / "convergence.csv")
    assert sorted(df.seed) == [0, 1] and set(df.stacked) == {2}
    assert set(df.status) == {"finished"} and set(df.evaluations) == {3}
    assert "### Verdicts" in (tmp_path / "reports" / "convergence.md").read_text()
