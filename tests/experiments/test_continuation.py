"""The continuation check end to end (iwgan.metrics.continuation, --continue-check): tiny
runs, stacked and single, through the one code path; the budget's results are those of the
run without the check, the run keeps its identity, and --resume knows the difference."""

import pandas as pd
import pytest
import torch

from iwgan.cli import main
from iwgan.engine.config import make_config
from iwgan.engine.records import read_curves, read_results
from iwgan.experiments.convergence import Convergence, ConvergenceOptions
from iwgan.experiments.mode_coverage import ModeCoverage
from iwgan.experiments.skeleton import run_unit
from iwgan.metrics.continuation import judge

pytestmark = pytest.mark.slow

ITERATIONS = 32     # 16 evaluations every 2; the continuation: 8 iterations, 6 evaluations
# what two runs of one config may differ in: times, and the record of the working tree
TIMES = {"train_seconds", "eval_seconds", "curve_seconds", "continued_seconds", "started",
         "finished", "stacked", "commit", "dirty"}
COLUMNS = ("continued_lr_fraction", "continued_lr", "continued_status",
           "continued_iterations", "continued_diverged_at", "continued_seconds",
           "continued_evaluations", "continued_w1_trend", "continued_hq_trend",
           "continued_modes", "continued_hq_pct", "continued_w1", "continued_modes_change",
           "continued_hq_pct_change", "continued_w1_change")


def configs(seeds=(0, 1)):
    return [make_config("tiny", method="iwgan", mixture="ring", seed=s, iterations=ITERATIONS,
                        lr_schedule="linear", ema=0.9) for s in seeds]


def test_stacked_and_single_runs_continue_alike_and_keep_their_budgets_results(tmp_path):
    cfgs = configs()
    stacked = run_unit(cfgs, ModeCoverage(tmp_path / "stacked", continuation=True))
    plain = run_unit(cfgs, ModeCoverage(tmp_path / "plain"))
    ticks, single_run = [], ModeCoverage(tmp_path / "single", continuation=True)
    [(single, single_curve)] = run_unit(cfgs[:1], single_run, progress=ticks.append)
    # the grid's bar counts the continuation's iterations as the unit's work
    assert sum(ticks) == single_run.work(cfgs[:1]) == ITERATIONS + 8
    assert ModeCoverage(tmp_path / "plain").work(cfgs) == ITERATIONS
    for (row, curve), (before, plain_curve) in zip(stacked, plain):
        assert row["run_id"] == before["run_id"] and row["config_hash"] == before["config_hash"]
        assert row["cell"] == before["cell"]
        for column in COLUMNS:
            assert column in row, column
        assert not any(k.startswith("continued") for k in before)
        # the budget's metrics, verdict and curve are those of the run without the check
        for key, value in before.items():
            if key not in TIMES:
                assert row[key] == value or (pd.isna(value) and pd.isna(row[key])), key
        pd.testing.assert_frame_equal(curve.drop(columns="train_seconds"),
                                      plain_curve.drop(columns="train_seconds"))
        assert curve.iteration.max() == ITERATIONS
        assert row["continued_status"] == "finished" and row["continued_iterations"] == 8
        assert row["continued_evaluations"] == 7        # the budget's end and 6 more
        assert row["continued_lr"] == pytest.approx(0.1 * cfgs[0].lr)
        assert row["continued_w1_change"] == pytest.approx(row["continued_w1"] - row["w1"])
    # the continuation's curves beside the budget's: 6 evaluations of 4 metrics a run
    curves = read_curves(tmp_path / "stacked" / "results" / "mode_coverage_continuation_curves.csv")
    assert sorted(curves.run_id.unique()) == sorted(c.run_id for c in cfgs)
    assert len(curves) == 2 * 6 * 4 and curves.iteration.min() == ITERATIONS + 1
    assert curves.iteration.max() == ITERATIONS + 8 and curves.train_seconds.notna().all()
    # the budget's checkpoint is the budget's, not the continuation's
    for cfg in cfgs:
        ours = torch.load(tmp_path / "stacked" / "runs" / cfg.run_id / "checkpoint.pt")
        theirs = torch.load(tmp_path / "plain" / "runs" / cfg.run_id / "checkpoint.pt")
        assert ours["iterations"] == theirs["iterations"] == ITERATIONS
        for name, tensor in theirs["modules"].items():
            assert torch.equal(ours["modules"][name], tensor), name
    # a stacked member's continuation is its single run's, to float rounding
    row = stacked[0][0]
    assert single["stacked"] == 1 and row["stacked"] == 2
    assert single["continued_modes"] == row["continued_modes"]
    for key in COLUMNS:
        if isinstance(single[key], float) and key not in TIMES:
            assert single[key] == pytest.approx(row[key], rel=1e-4, abs=1e-6, nan_ok=True), key
    assert single_curve.iteration.tolist() == stacked[0][1].iteration.tolist()


def test_the_convergence_experiment_continues_from_its_final_metrics(tmp_path):
    opts = ConvergenceOptions(eval_every=4, gap_steps=1, gap_samples=50, w1_samples=100,
                              decomposition_samples=50)
    [(row, curve)] = run_unit(configs((0,)), Convergence(tmp_path, opts, continuation=True))
    assert row["continued_iterations"] == 8 and row["continued_evaluations"] == 7
    assert row["continued_modes_change"] == row["continued_modes"] - row["final_modes"]
    assert row["continued_w1_change"] == pytest.approx(row["continued_w1"] - row["final_w1"])
    assert curve.iteration.max() == ITERATIONS


def test_the_command_line_check_keeps_run_ids_and_resumes(tmp_path, capsys):
    grid = ["mode-coverage", "--profile", "tiny", "--iterations", str(ITERATIONS), "--seeds",
            "2", "--mixtures", "ring", "--methods", "wgan_gp", "--presets", "paper",
            "--out", str(tmp_path), "--jobs", "1", "--no-report"]
    assert main(grid) == 0
    plain = read_results(tmp_path / "results" / "mode_coverage.csv")
    capsys.readouterr()
    # a table without the check's columns: --resume with the check runs every run again
    assert main([*grid, "--continue-check", "--resume"]) == 0
    assert "2 runs" in capsys.readouterr().out
    checked = read_results(tmp_path / "results" / "mode_coverage.csv")
    assert checked.run_id.tolist() == plain.run_id.tolist()
    assert checked.config_hash.tolist() == plain.config_hash.tolist()
    assert checked[["modes", "hq_pct", "w1", "converged"]].equals(
        plain[["modes", "hq_pct", "w1", "converged"]])
    assert checked.continued_iterations.tolist() == [8, 8]
    # ... and skips them once they have the columns; so does --resume without the check
    assert main([*grid, "--continue-check", "--resume"]) == 0
    assert "0 runs" in capsys.readouterr().out
    assert main([*grid, "--resume"]) == 0
    assert "0 runs" in capsys.readouterr().out
    verdicts = judge(checked)
    assert verdicts.continued_w1_allowed.notna().all()
    assert set(verdicts.continued_converged) <= {True, False}
