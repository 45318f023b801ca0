"""The one trainer: one real step of every method, seeds, divergence, the stopping rule,
the learning-rate schedule, hooks, and checkpoint and resume."""

import math

import pytest
import torch

from iwgan.core.methods import METHOD_NAMES, get_method
from iwgan.data.mixtures import MixtureBatches
from iwgan.engine.config import make_config
from iwgan.engine.trainer import Checkpoint, Evaluate, Hook, StopRule, Trainer, train
from iwgan.experiments.mode_coverage import ModeCoverage, evaluate
from iwgan.experiments.skeleton import run_unit


def snapshot(models):
    return {k: [p.detach().clone() for p in m.parameters()] for k, m in models.named().items()}


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_one_training_iteration_updates_every_network_and_logs_finite_values(method):
    cfg = make_config("tiny", method=method, iterations=1)
    trainer = Trainer([cfg], MixtureBatches([cfg]))
    models = trainer.members.member(0)
    before = snapshot(models)
    [logs] = trainer.run_iteration()
    assert set(logs) == set(get_method(method).logs)
    assert all(math.isfinite(v) for v in logs.values())
    after = snapshot(models)
    for name in before:
        assert any(not torch.equal(a, b) for a, b in zip(before[name], after[name])), name


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_same_seed_twice_gives_identical_metrics(method):
    cfg = make_config("tiny", method=method, mixture="grid")
    a, b = (evaluate(cfg, train(cfg)[0].models)[0] for _ in range(2))
    assert a == pytest.approx(b, nan_ok=True, rel=0, abs=0)
    other = make_config("tiny", method=method, mixture="grid", seed=1)
    assert evaluate(other, train(other)[0].models)[0]["w1"] != a["w1"]


def test_a_nan_loss_is_recorded_as_diverged_with_its_iteration(tmp_path):
    cfg = make_config("tiny", method="wgan_gp", lr=1e30, iterations=50)
    [result] = train(cfg)
    assert result.status == "diverged" and 1 <= result.diverged_at < 50
    assert result.models is None and result.iterations == result.diverged_at
    [(row, _)] = run_unit((cfg,), ModeCoverage(tmp_path))
    assert row["status"] == "diverged" and row["diverged_at"] == result.diverged_at
    assert math.isnan(row["w1"])


def test_the_stopping_rule_stops_when_the_windowed_gap_and_loss_are_small():
    # Thresholds no run can miss: the rule fires as soon as the window is full.
    cfg = make_config("tiny", method="iwgan", iterations=50, stop_rule=True, stop_window=3,
                      stop_gap=1e9, stop_loss=1e9)
    [result] = train(cfg)
    assert result.stopped_early and result.iterations == 3
    never = make_config("tiny", method="iwgan", iterations=5, stop_rule=True, stop_gap=0.0)
    assert train(never)[0].iterations == 5


def test_stacked_members_that_stop_keep_their_networks_of_that_iteration():
    # Both stop as soon as their window is full; each member's networks then equal its
    # single run's, stopped at the same iteration.
    cfgs = [make_config("tiny", method="iwgan", iterations=20, stop_rule=True, stop_window=3,
                        stop_gap=1e9, stop_loss=1e9, seed=s) for s in (0, 1)]
    stacked = train(cfgs)
    for cfg, result in zip(cfgs, stacked):
        [single] = train(cfg)
        assert result.stopped_early and result.iterations == single.iterations == 3
        ours, theirs = evaluate(cfg, result.models)[0], evaluate(cfg, single.models)[0]
        assert ours["w1"] == pytest.approx(theirs["w1"], rel=1e-4)


def test_the_stopping_rule_is_a_hook_whose_window_a_resumed_run_keeps(tmp_path):
    # The window fills over iterations 1-4 whoever trains them: a run stopped after 2
    # (checkpoint 2) and resumed stops at 4 as one that ran through.
    cfg = make_config("tiny", method="iwgan", iterations=20, stop_rule=True, stop_window=4,
                      stop_gap=1e9, stop_loss=1e9)
    path = tmp_path / "checkpoint.pt"
    first = Trainer([cfg], MixtureBatches([cfg]), [Checkpoint(path, 2), StopRule([cfg])])
    first.fit(until=2)
    second = Trainer([cfg], MixtureBatches([cfg]), [StopRule([cfg])], resume=path)
    assert [len(w) for w in second.hooks[0].windows[0].values()] == [2, 2]
    [result] = second.fit()
    assert result.stopped_early and result.iterations == train(cfg)[0].iterations == 4
    # Without the hook the trainer knows no stopping rule: it trains to the end.
    assert Trainer([cfg], MixtureBatches([cfg])).fit()[0].iterations == 20


def learning_rates(cfg, optimizer):
    """The rate of ``optimizer`` at each iteration of ``cfg``, and the trainer after them."""
    trainer = Trainer([cfg], MixtureBatches([cfg]))
    lrs = []
    for _ in range(cfg.iterations):
        lrs.append(trainer.members.optimizers[optimizer].param_groups[0]["lr"])
        trainer.run_iteration()
    return lrs, trainer


def test_the_linear_schedule_decays_the_learning_rate_to_zero():
    cfg = make_config("tiny", method="wgan_gp", iterations=4, lr_schedule="linear")
    lrs, trainer = learning_rates(cfg, "critic")
    assert lrs == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3])
    assert trainer.members.optimizers["generator"].param_groups[0]["lr"] == 0.0


class Calls(Hook):
    def __init__(self):
        self.events = []

    def on_start(self, trainer):
        self.events.append(("start", trainer.iteration))

    def on_log(self, trainer, k, record):
        self.events.append(("log", record["iteration"]))

    def on_end(self, trainer):
        self.events.append(("end", trainer.iteration))


def test_hooks_see_the_start_every_logged_iteration_and_the_end():
    cfg = make_config("tiny", iterations=5, log_every=2)
    calls = Calls()
    seen = []
    train(cfg, hooks=[calls, Evaluate(lambda k, it, m: seen.append(it), every=2)])
    assert calls.events == [("start", 0), ("log", 2), ("log", 4), ("log", 5), ("end", 5)]
    assert seen == [0, 2, 4, 5]


@pytest.mark.parametrize("method", ["iwgan", "ali"])
def test_a_run_resumed_from_its_checkpoint_reaches_the_uninterrupted_weights(tmp_path, method):
    cfgs = [make_config("tiny", method=method, iterations=8, lr_schedule="linear", seed=s)
            for s in (0, 1)]
    whole = train(cfgs)
    path = tmp_path / "checkpoint.pt"
    first = Trainer(cfgs, MixtureBatches(cfgs), [Checkpoint(path, every=3)])
    first.fit(until=5)                       # a kill after iteration 5: last checkpoint 3
    second = Trainer(cfgs, MixtureBatches(cfgs), [Checkpoint(path, every=3)], resume=path)
    assert second.iteration == 3
    resumed = second.fit()
    for a, b in zip(whole, resumed):
        for (name, p), q in zip(a.models.named_parameters(), b.models.parameters()):
            assert torch.equal(p, q), name
        assert a.history[-1]["iteration"] == b.history[-1]["iteration"] == 8


def test_resuming_under_another_config_is_refused_naming_the_difference(tmp_path):
    cfg = make_config("tiny", iterations=4)
    path = tmp_path / "checkpoint.pt"
    Trainer([cfg], MixtureBatches([cfg]), [Checkpoint(path, every=2)]).fit()
    other = make_config("tiny", iterations=4, lr=5e-4)
    with pytest.raises(ValueError, match=r"lr \(checkpoint 0.001, now 0.0005\)"):
        Trainer([other], MixtureBatches([other]), resume=path)


def test_the_step_schedule_trains_the_second_half_at_a_tenth_of_the_rate():
    cfg = make_config("tiny", method="iwgan", iterations=4, lr_schedule="step")
    lrs, _ = learning_rates(cfg, "generator")
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
