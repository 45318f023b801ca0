"""The duality gap of eq. (4), the evaluation hook, W1, the convergence summaries and a
tiny end-to-end `convergence` run with its report."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from iwgan.cli import main
from iwgan.engine.config import make_config
from iwgan.engine.records import read_results
from iwgan.engine.trainer import Evaluate, LogTo, train
from iwgan.experiments.convergence import (
    ConvergenceOptions,
    Evaluator,
    first_reached,
    record_thresholds,
    spearman,
    stopping_analysis,
    w1_floor,
)
from iwgan.metrics.mixture import w1_exact


def state(models):
    return {n: p.detach().clone() for n, p in models.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["iwgan", "wgan_gp", "ali"])
def test_evaluation_changes_neither_the_weights_nor_the_training_stream(method):
    cfg = make_config("tiny", method=method, iterations=6, log_every=1)
    [plain] = train(cfg)
    rng_plain = torch.get_rng_state()
    opts = ConvergenceOptions(eval_every=2, gap_steps=3, gap_samples=100, w1_samples=100,
                              decomposition_samples=50)
    evaluator = Evaluator(cfg, opts)
    [evaluated] = train(cfg, hooks=[LogTo([evaluator.on_log]),
                                    Evaluate(lambda k, it, m: evaluator(it, m), opts.eval_every)])
    assert torch.equal(torch.get_rng_state(), rng_plain)
    a, b = state(plain.models), state(evaluated.models)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["iteration"] for r in evaluator.records] == [0, 2, 4, 6]
    assert [{k: v for k, v in r.items() if k != "wall_time"} for r in plain.history] == \
        [{k: v for k, v in r.items() if k != "wall_time"} for r in evaluated.history]


def test_w1_on_known_shifts_is_the_shift_length():
    x = np.random.default_rng(0).normal(size=(300, 2))
    for shift in ([0.5, 0.0], [3.0, -4.0]):
        assert w1_exact(x, x + np.array(shift)) == pytest.approx(np.linalg.norm(shift),
                                                                 rel=1e-9)
    assert w1_exact(x, x) == pytest.approx(0.0, abs=1e-12)


def test_the_w1_floor_is_positive_and_shrinks_with_more_points():
    assert 0 < w1_floor("ring", "paper", 800) < w1_floor("ring", "paper", 100)


def test_first_reached_spearman_and_the_replayed_stopping_rule():
    curve = pd.DataFrame({"iteration": [0, 10, 20, 30], "train_seconds": [0, 1, 2, 3],
                          "w1": [1.0, 0.5, 0.2, 0.1], "dual_gap": [0.9, 0.4, 0.01, 0.02],
                          "objective_heldout": [1.0, 0.5, 0.01, 0.0]})
    assert first_reached(curve, curve.w1 <= 0.2) == (20.0, 2.0)
    assert all(math.isnan(v) for v in first_reached(curve, curve.w1 < 0))
    assert spearman(curve.dual_gap, curve.w1) == pytest.approx(0.8)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    cfg = make_config("tiny", method="iwgan", stop_window=2, stop_gap=0.05, stop_loss=0.05)
    history = [{"iteration": i, "dual_gap": g, "objective_L": g}
               for i, g in enumerate([1.0, 0.5, 0.02, 0.01, 0.0], start=1)]
    out = stopping_analysis(history, curve, cfg)
    assert out["stop_it_batch"] == 4 and out["stop_w1"] == 0.5  # first evaluation >= 4
    assert out["stop_it_eq4"] == 20 and out["stop_w1_eq4"] == 0.2


@pytest.mark.parametrize("kwargs", [{"eval_every": 0}, {"gap_steps": -1}, {"w1_samples": 0},
                                    {"alpha": 0.0}, {"alpha": 1.2}])
def test_bad_options_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ConvergenceOptions(**kwargs)


def test_a_non_positive_evaluation_period_is_refused():
    with pytest.raises(ValueError, match="eval_every"):
        Evaluate(lambda k, it, m: None, every=0)


@pytest.mark.parametrize("bad", [["--eval-every", "0"], ["--gap-steps", "-2"]])
def test_the_command_refuses_non_positive_periods_and_steps(tmp_path, bad, capsys):
    with pytest.raises(SystemExit) as err:
        main(["convergence", "--profile", "tiny", "--out", str(tmp_path), *bad])
    assert err.value.code == 2 and "positive integer" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("alpha", ["1.5", "0"])
def test_the_command_refuses_alpha_outside_the_unit_interval(tmp_path, alpha, capsys):
    rc = main(["convergence", "--profile", "tiny", "--out", str(tmp_path), "--alpha", alpha])
    assert rc == 2 and "alpha must lie in (0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_convergence_end_to_end_then_the_report_is_rebuilt_from_results(tmp_path):
    args = ["convergence", "--profile", "tiny", "--seeds", "1", "--mixtures", "ring",
            "--out", str(tmp_path), "--jobs", "1", "--eval-every", "2", "--gap-steps", "2",
            "--w1-samples", "150"]
    assert main(args) == 0
    results = tmp_path / "results"
    df = read_results(results / "convergence.csv")
    assert len(df) == 4 and set(df.status) == {"finished"}
    curves = pd.read_csv(results / "convergence_curves.csv")
    assert set(curves.run_id) == set(df.run_id)
    assert sorted(set(curves.iteration)) == [0, 2, 4, 6]
    run = tmp_path / "runs" / "convergence" / df.run_id[0]
    for name in ("config.json", "manifest.json", "log.jsonl", "metrics.json", "checkpoint.pt",
                 "metric-w1_ot.jsonl", "metric-duality_gap.jsonl",
                 "metric-mode_coverage_3std.jsonl"):
        assert (run / name).exists(), name
    assert len((run / "metric-w1_ot.jsonl").read_text().splitlines()) == 4
    wgan = df[df.method == "wgan_gp"].iloc[0]
    assert wgan.gap_kind == "wgan" and math.isnan(wgan.auroc) and math.isnan(wgan.latent_mmd)
    assert 0 <= df[df.method == "iwgan"].iloc[0].auroc <= 1
    report = (tmp_path / "reports" / "convergence.md").read_text()
    assert "### Verdicts" in report and "C3 The duality gap tracks convergence" in report
    wgan_rows = [line for line in report.splitlines() if line.startswith("| ring | wgan_gp |")]
    assert wgan_rows and any("n/a" in line for line in wgan_rows)
    assert main(["reports", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "reports" / "convergence.md").read_text() == report


def test_thresholds_merge_by_mixture_preset_and_sample_count(tmp_path):
    path = tmp_path / "thresholds.json"
    ring, grid = make_config("tiny", mixture="ring"), make_config("tiny", mixture="grid")
    record_thresholds(path, [ring, grid], ConvergenceOptions(w1_samples=100))
    record_thresholds(path, [ring], ConvergenceOptions(w1_samples=150))
    import json

    keys = sorted(json.loads(path.read_text()))
    assert keys == ["grid-paper-n100", "ring-paper-n100", "ring-paper-n150"]


@pytest.mark.slow
def test_resume_re_runs_what_a_changed_evaluation_option_invalidates(tmp_path, capsys):
    args = ["convergence", "--profile", "tiny", "--seeds", "1", "--mixtures", "ring",
            "--methods", "iwgan", "--out", str(tmp_path), "--jobs", "1", "--eval-every", "3",
            "--gap-steps", "2", "--w1-samples", "100", "--no-report"]
    assert main(args) == 0
    assert main([*args, "--resume"]) == 0
    assert "0 runs" in capsys.readouterr().out
    changed = [a if a != "3" else "2" for a in args]
    assert main([*changed, "--resume"]) == 0
    assert "1 runs" in capsys.readouterr().out
    df = read_results(tmp_path / "results" / "convergence.csv")
    assert list(df.evaluations) == [4]


def test_the_default_options_hash_as_before_final_gaps_existed_so_committed_runs_resume():
    committed = pd.read_csv(Path(__file__).parents[2] / "results" / "convergence.csv")
    assert set(committed.options_hash) == {ConvergenceOptions().hash()}
    assert "final_gap_steps" not in ConvergenceOptions().recorded()
    assert ConvergenceOptions(final_gap_steps=(15, 100)).hash() != ConvergenceOptions().hash()
    with pytest.raises(ValueError, match="final_gap_steps"):
        ConvergenceOptions(final_gap_steps=(15, 0))


@pytest.mark.slow
def test_final_gaps_at_several_inner_steps_are_recorded_and_reported(tmp_path):
    args = ["convergence", "--profile", "tiny", "--seeds", "2", "--mixtures", "ring",
            "--methods", "iwgan", "--out", str(tmp_path), "--jobs", "1", "--eval-every", "3",
            "--gap-steps", "2", "--w1-samples", "100", "--final-gap-steps", "2", "40"]
    assert main(args) == 0
    df = read_results(tmp_path / "results" / "convergence.csv")
    assert set(df.opt_final_gap_steps) == {"2,40"}
    assert np.isfinite(df[["final_gap_2", "final_gap_40"]].to_numpy()).all()
    # 40 Adam steps of the sup copy of f and of the inf copy move them further than 2
    assert (df.final_gap_40 != df.final_gap_2).all()
    report = (tmp_path / "reports" / "convergence.md").read_text()
    table = report.split("### eq. (4)'s sensitivity to its inner steps")[1]
    assert "| ring | iwgan | 2 |" in table and "40 − 2 steps" in table
