"""The moving average of G's and Q's weights (``ema``): the closed-form recursion on the
live trajectory, per member of a stack, the networks it leaves alone, resume, identity
and bad values."""

import pytest
import torch

from iwgan.data.mixtures import MixtureBatches
from iwgan.engine.config import make_config
from iwgan.engine.trainer import Checkpoint, Hook, Trainer, train


class Trajectory(Hook):
    """Every member's live weights at the start and after every iteration."""

    def __init__(self):
        self.weights = []

    def record(self, trainer):
        self.weights.append({n: p.detach().clone() for n, p in trainer.members.params.items()})

    def on_start(self, trainer):
        self.record(trainer)

    def on_iteration(self, trainer):
        self.record(trainer)


def expected_average(weights, name, decay, k=None):
    """a_0 = w_0, a_t = decay * a_(t-1) + (1 - decay) * w_t, written out."""
    pick = (lambda w: w[name]) if k is None else (lambda w: w[name][k])
    average = pick(weights[0]).double()
    for w in weights[1:]:
        average = decay * average + (1 - decay) * pick(w).double()
    return average


@pytest.mark.parametrize("method", ["iwgan", "wgan_gp"])
def test_the_evaluated_generator_and_encoder_are_the_moving_average_of_the_live_ones(method):
    cfg = make_config("tiny", method=method, iterations=6, ema=0.6)
    path = Trajectory()
    trainer = Trainer([cfg], MixtureBatches([cfg]), [path])
    [result] = trainer.fit()
    evaluated = dict(result.models.named_parameters())
    live = trainer.members.params
    averaged = [n for n in evaluated if n.startswith(("generator.", "encoder."))]
    assert averaged and (method != "iwgan" or any(n.startswith("encoder.") for n in averaged))
    for name, p in evaluated.items():
        if name in averaged:
            want = expected_average(path.weights, name, 0.6)
            assert torch.allclose(p.double(), want, atol=1e-6), name
            assert not torch.equal(p, live[name]), name    # the average lags the weights
        else:   # the critic (and any extra module) is used as trained
            assert torch.equal(p, live[name]), name


def test_each_stacked_member_averages_its_own_trajectory():
    cfgs = [make_config("tiny", method="alpha_gan", iterations=5, ema=0.5, seed=s)
            for s in (0, 1)]
    path = Trajectory()
    trainer = Trainer(cfgs, MixtureBatches(cfgs), [path])
    results = trainer.fit()
    for k, result in enumerate(results):
        for name, p in result.models.named_parameters():
            if name.startswith(("generator.", "encoder.")):
                want = expected_average(path.weights, name, 0.5, k)
                assert torch.allclose(p.double(), want, atol=1e-6), (k, name)


def test_without_an_average_the_results_are_the_live_networks():
    cfg = make_config("tiny", method="iwgan", iterations=3)
    trainer = Trainer([cfg], MixtureBatches([cfg]))
    [result] = trainer.fit()
    assert trainer.members.averaged == {} and result.models is trainer.members.models


def test_a_resumed_run_reaches_the_uninterrupted_average(tmp_path):
    cfgs = [make_config("tiny", method="iwgan", iterations=8, ema=0.9, seed=s) for s in (0, 1)]
    whole = train(cfgs)
    path = tmp_path / "checkpoint.pt"
    Trainer(cfgs, MixtureBatches(cfgs), [Checkpoint(path, every=3)]).fit(until=5)
    resumed = Trainer(cfgs, MixtureBatches(cfgs), resume=path).fit()
    for a, b in zip(whole, resumed):
        for (name, p), q in zip(a.models.named_parameters(), b.models.parameters()):
            assert torch.equal(p, q), name


def test_an_average_is_another_run_and_no_average_keeps_the_earlier_identity():
    plain = make_config("quick", method="iwgan")
    assert "ema" not in plain.to_dict() and plain.run_id == "quick-paper-ring-iwgan-seed0"
    averaged = make_config("quick", method="iwgan", ema=0.999)
    assert averaged.to_dict()["ema"] == 0.999
    assert averaged.run_id.startswith(plain.run_id + "-") and averaged.hash() != plain.hash()
    assert averaged.overrides() == {"ema": 0.999}


def test_the_converged_profiles_own_average_is_its_plain_run_and_turning_it_off_is_not():
    own = make_config("converged", method="iwgan")
    assert own.ema == 0.99 and own.run_id == "converged-paper-ring-iwgan-seed0"
    off = make_config("converged", method="iwgan", ema=0.0)
    assert off.overrides() == {"ema": 0.0} and off.run_id.startswith(own.run_id + "-")


@pytest.mark.parametrize("bad", [1.0, -0.1, 2])
def test_a_decay_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match=r"ema must be a decay in \[0, 1\)"):
        make_config("tiny", ema=bad)

