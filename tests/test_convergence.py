"""The duality gap of eq. (4), the evaluation hook, W1, the convergence summaries and a
tiny end-to-end `convergence` run with its report."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from iwgan.cli import main
from iwgan.config import make_config
from iwgan.convergence import (
    ConvergenceOptions,
    Evaluator,
    duality_gap,
    first_reached,
    spearman,
    stopping_analysis,
    w1_floor,
)
from iwgan.methods import Models, get_method
from iwgan.metrics import w1_exact
from iwgan.records import read_results
from iwgan.training import derived_generator, train

X0 = torch.tensor([0.3, -0.7])


def single_point(n, generator=None):
    return X0.expand(n, 2).clone()


def converged_by_hand(method):
    """Data is the single point X0; G maps every code to X0 and f is constant: at the
    saddle point, so the gap is 0 (Theorem 2.2: G outputs P_X and L = 0)."""
    cfg = make_config("tiny", method=method)
    torch.manual_seed(0)
    models = get_method(method).build(cfg)
    with torch.no_grad():
        models.generator[-1].weight.zero_()
        models.generator[-1].bias.copy_(X0)
        models.critic[-1].weight.zero_()
    return cfg, models


@pytest.mark.parametrize("method", ["iwgan", "wgan_gp"])
def test_the_gap_is_zero_at_a_converged_point(method):
    cfg, models = converged_by_hand(method)
    out = duality_gap(models, cfg, single_point, torch.Generator().manual_seed(0), steps=5,
                      n_eval=64)
    assert out["dual_gap"] == pytest.approx(0.0, abs=1e-5)
    assert out["objective_heldout"] == pytest.approx(0.0, abs=1e-5)


def test_the_gap_is_clearly_positive_far_from_convergence():
    # Random G, Q with the data point ~4 away: L ~ 4, and a few Adam steps of the inf
    # copies already lower it by a clear margin (the estimate is a lower bound of the true
    # gap: the copies move at most ~lr per step and parameter).
    cfg = make_config("tiny", method="iwgan")
    torch.manual_seed(0)
    models = get_method("iwgan").build(cfg)
    out = duality_gap(models, cfg, lambda n, generator=None: single_point(n) + 3.0,
                      torch.Generator().manual_seed(0), steps=30, n_eval=64)
    assert out["dual_gap"] > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("method", ["iwgan", "wgan_gp"])
def test_the_gap_is_non_negative_up_to_noise_on_a_briefly_trained_model(method):
    from iwgan.mixtures import get_mixture

    cfg = make_config("tiny", method=method, iterations=20)
    models = train(cfg).models
    out = duality_gap(models, cfg, get_mixture("ring").sample,
                      torch.Generator().manual_seed(1), steps=10, n_eval=500)
    assert out["dual_gap"] > -0.05


def state(models):
    return {f"{k}.{n}": p.detach().clone() for k, m in models.modules().items()
            for n, p in m.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["iwgan", "wgan_gp", "ali"])
def test_evaluation_changes_neither_the_weights_nor_the_training_stream(method):
    cfg = make_config("tiny", method=method, iterations=6, log_every=1)
    plain = train(cfg)
    rng_plain = torch.get_rng_state()
    opts = ConvergenceOptions(eval_every=2, gap_steps=3, gap_samples=100, w1_samples=100,
                              decomposition_samples=50)
    evaluator = Evaluator(cfg, opts)
    evaluated = train(cfg, on_log=evaluator.on_log, on_eval=evaluator,
                      eval_every=opts.eval_every)
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


def test_bad_steps_and_hook_periods_are_refused():
    cfg = make_config("tiny", method="iwgan")
    models = get_method("iwgan").build(cfg)
    with pytest.raises(ValueError, match="gap_steps"):
        duality_gap(models, cfg, single_point, torch.Generator(), steps=0)
    with pytest.raises(ValueError, match="eval_every"):
        train(cfg, on_eval=lambda it, m: None, eval_every=0)


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
    assert "### Verdicts" in report and "duality gap goes to 0" in report
    wgan_rows = [line for line in report.splitlines() if line.startswith("| ring | wgan_gp |")]
    assert wgan_rows and any("n/a" in line for line in wgan_rows)
    assert main(["reports", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "reports" / "convergence.md").read_text() == report


def test_the_generator_free_gradient_penalty_leaves_the_global_stream_alone():
    from iwgan.convergence import gradient_penalty_with

    critic = nn.Linear(2, 1)
    before = torch.get_rng_state()
    gradient_penalty_with(critic, torch.zeros(4, 2), torch.ones(4, 2),
                          derived_generator(0, "x"))
    assert torch.equal(before, torch.get_rng_state())
    # A linear critic has gradient norm ||w|| everywhere.
    gp = gradient_penalty_with(critic, torch.zeros(4, 2), torch.ones(4, 2), torch.Generator())
    assert float(gp.detach()) == pytest.approx((float(critic.weight.detach().norm()) - 1) ** 2,
                                                 rel=1e-5)


def test_models_without_an_encoder_get_the_wgan_gap():
    cfg, models = converged_by_hand("wgan_gp")
    assert isinstance(models, Models) and models.encoder is None
    out = duality_gap(models, cfg, single_point, torch.Generator().manual_seed(0), steps=2,
                      n_eval=16)
    assert math.isnan(out["gap_cheap_heldout"]) and math.isnan(out["recon_error"])
