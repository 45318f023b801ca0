"""One config family: strict overrides, identities that carry every override, bad input."""

import pytest

from iwgan.engine.config import ImageConfig, make_config, make_image_config, parse_field


def test_a_profile_run_is_named_by_its_cell_and_an_override_gets_a_hash_of_it():
    cfg = make_config("quick", method="iwgan", mixture="grid", preset="literature", seed=2)
    assert cfg.run_id == "quick-literature-grid-iwgan-seed2"
    longer = make_config("quick", method="iwgan", mixture="grid", preset="literature", seed=2,
                         iterations=40)
    assert longer.run_id.startswith(cfg.run_id + "-") and longer.run_id != cfg.run_id
    assert longer.overrides() == {"iterations": 40}
    # How a run is executed or written down is not part of what it is.
    assert make_config("quick", mixture="grid", preset="literature", method="iwgan", seed=2,
                       log_every=1, device="cpu", threads=2).run_id == cfg.run_id


def test_the_seeds_of_one_cell_share_a_cell_key_and_nothing_else_does():
    a, b = (make_config("quick", seed=s) for s in (0, 1))
    assert a.cell_key() == b.cell_key()
    assert make_config("quick", iterations=40).cell_key() != a.cell_key()
    assert make_config("quick", mixture="grid").cell_key() != a.cell_key()


def test_image_runs_are_named_the_same_way():
    cfg = make_image_config("digits", "cpu", method="ali", seed=1)
    assert cfg.run_id == "cpu-digits-ali-seed1"
    assert make_image_config("digits", "cpu", method="ali", seed=1,
                             iterations=4).run_id != cfg.run_id


def test_the_stopping_rule_is_refused_for_a_method_without_duality_gap():
    with pytest.raises(ValueError, match="wgan_gp.*stop_rule"):
        make_config("tiny", method="wgan_gp", stop_rule=True)


@pytest.mark.parametrize("field, value", [("iterations", 0), ("batch_size", -1), ("seed", -2),
                                          ("lr", 0.0), ("lr", float("inf")),
                                          ("lr", float("nan")), ("n_critic", 0),
                                          ("width", -1.0)])
def test_non_positive_or_non_finite_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        make_config("tiny", **{field: value})


def test_an_infinite_image_learning_rate_is_refused():
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        make_image_config("digits", "smoke", lr=float("inf"))


@pytest.mark.parametrize("kwargs, word", [({"method": "vae"}, "method"),
                                          ({"mixture": "moons"}, "mixture"),
                                          ({"preset": "veegan"}, "preset"),
                                          ({"lr_schedule": "cosine"}, "lr_schedule"),
                                          ({"device": "tpu"}, "device"),
                                          ({"device": "foo"}, "device"),
                                          ({"bogus": 1}, "unknown config field")])
def test_unknown_names_are_refused_with_the_valid_choices(kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_config("tiny", **kwargs)


def test_a_method_option_it_does_not_have_is_refused_naming_both():
    with pytest.raises(ValueError, match="'wgan_gp' has no option 'encoder'"):
        make_config("tiny", method="wgan_gp", options={"encoder": "stochastic"})


def test_every_image_field_can_be_overridden_from_the_command_line():
    # Parsed from the class's fields: a default ImageConfig() is not a valid config (its
    # profile "quick" is a mixture profile), and None defaults take their annotation's type.
    assert parse_field("options", '{"reconstruction": "l2_squared"}', ImageConfig) == \
        {"reconstruction": "l2_squared"}
    assert parse_field("lambda_mmd", "1", ImageConfig) == 1.0
    assert parse_field("max_train", "100", ImageConfig) == 100
    assert parse_field("crop", "140", ImageConfig) == 140
    with pytest.raises(ValueError, match="'max_train' takes a int"):
        parse_field("max_train", "many", ImageConfig)


def test_curve_points_is_another_run_and_the_default_keeps_the_earlier_identity():
    plain = make_config("converged", method="iwgan")
    assert "curve_points" not in plain.to_dict()
    dense = make_config("converged", method="iwgan", curve_points=32)
    assert dense.overrides() == {"curve_points": 32} and dense.run_id != plain.run_id
    with pytest.raises(ValueError, match="curve_points must be a positive integer"):
        make_config("tiny", curve_points=0)
