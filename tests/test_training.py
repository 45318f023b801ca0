import math

import pytest
import torch
from parity import assert_uses_shared_networks

from iwgan.config import make_config
from iwgan.methods import METHOD_NAMES, get_method
from iwgan.networks import build_networks
from iwgan.runs import evaluate, run_one
from iwgan.training import Diverged, train


def snapshot(models):
    return {k: [p.detach().clone() for p in m.parameters()] for k, m in models.modules().items()}


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_one_training_iteration_updates_every_network_and_logs_finite_values(method):
    cfg = make_config("tiny", method=method, iterations=1)
    torch.manual_seed(0)
    models = get_method(method).build(cfg)
    before = snapshot(models)
    logs = {}
    for step, count in get_method(method).phases(cfg):
        for _ in range(count):
            x, z = torch.randn(cfg.batch_size, 2), torch.randn(cfg.batch_size, cfg.z_dim)
            logs.update(step(models, x, z, cfg))
    assert set(logs) == set(get_method(method).LOGS)
    assert all(math.isfinite(float(v)) for v in logs.values())
    after = snapshot(models)
    for name in before:
        assert any(not torch.equal(a, b) for a, b in zip(before[name], after[name])), name


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_method_uses_the_shared_networks(method):
    """Parity: encoder, generator and critic have the shapes of the shared definition."""
    for width in (1.0, 0.25):
        cfg = make_config("quick", method=method, width=width)
        assert_uses_shared_networks(method, cfg)


def test_paper_width_networks_have_the_appendix_d1_sizes():
    nets = build_networks("mixture", 1.0, 5)
    sizes = lambda m: [layer.out_features for layer in m if hasattr(layer, "out_features")]  # noqa: E731
    assert sizes(nets.encoder) == [1024, 512, 256, 128, 5]
    assert sizes(nets.generator) == [512, 512, 512, 2]
    assert sizes(nets.critic) == [512, 512, 512, 1]


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_same_seed_twice_gives_identical_metrics(method):
    cfg = make_config("tiny", method=method, mixture="grid")
    a, b = (evaluate(cfg, train(cfg).models)[0] for _ in range(2))
    assert a == pytest.approx(b, nan_ok=True, rel=0, abs=0)
    other = make_config("tiny", method=method, mixture="grid", seed=1)
    assert evaluate(other, train(other).models)[0]["w1"] != a["w1"]


def test_a_nan_loss_is_recorded_as_diverged_with_its_iteration(tmp_path):
    cfg = make_config("tiny", method="wgan_gp", lr=1e30, iterations=50)
    with pytest.raises(Diverged) as err:
        train(cfg)
    row = run_one(cfg, tmp_path)
    assert row["status"] == "diverged" and row["diverged_at"] == err.value.iteration
    assert math.isnan(row["w1"])


def test_the_stopping_rule_stops_when_the_windowed_gap_and_loss_are_small():
    # Thresholds no run can miss: the rule fires as soon as the window is full.
    cfg = make_config("tiny", method="iwgan", iterations=50, stop_rule=True, stop_window=3,
                      stop_gap=1e9, stop_loss=1e9)
    result = train(cfg)
    assert result.stopped_early and result.iterations == 3
    never = make_config("tiny", method="iwgan", iterations=5, stop_rule=True, stop_gap=0.0)
    assert train(never).iterations == 5


def test_the_stopping_rule_is_refused_for_a_method_without_duality_gap():
    with pytest.raises(ValueError, match="wgan_gp.*stop_rule"):
        make_config("tiny", method="wgan_gp", stop_rule=True)


@pytest.mark.parametrize("field, value", [("iterations", 0), ("batch_size", -1), ("seed", -2),
                                          ("lr", 0.0), ("n_critic", 0)])
def test_non_positive_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        make_config("tiny", **{field: value})


@pytest.mark.parametrize("kwargs, word", [({"method": "vae"}, "method"),
                                          ({"mixture": "moons"}, "mixture"),
                                          ({"preset": "veegan"}, "preset"),
                                          ({"bogus": 1}, "unknown config field")])
def test_unknown_names_are_refused_with_the_valid_choices(kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_config("tiny", **kwargs)


def test_a_method_option_it_does_not_have_is_refused_naming_both():
    with pytest.raises(ValueError, match="'wgan_gp' has no option 'encoder'"):
        make_config("tiny", method="wgan_gp", options={"encoder": "stochastic"})
