"""The wall-time records' keys: the whole default grid at the profile's settings under
the profile's name; any other grid, or other settings, under a key of its own, so that
two grids into one --out (or two budgets of one profile) never overwrite each other."""

from iwgan.engine.config import make_config, make_image_config
from iwgan.experiments.common import wall_time_key

WHOLE = {"methods": ["ali", "iwgan"], "seeds": [0]}


def key(methods, **overrides):
    configs = [make_image_config("digits", "cpu", method=m, **overrides) for m in methods]
    return wall_time_key("digits-cpu", {"methods": sorted(methods), "seeds": [0]}, WHOLE,
                         configs)


def test_the_default_grid_keeps_the_profiles_name_and_every_other_grid_gets_its_own():
    assert key(["ali", "iwgan"]) == "digits-cpu"
    keys = {key(["ali"]), key(["iwgan"]), key(["ali", "iwgan"], iterations=3000),
            key(["ali"], iterations=3000), key(["ali"], iterations=2000)}
    assert len(keys) == 5 and all(k.startswith("digits-cpu-") for k in keys)
    assert key(["ali"], iterations=3000) == key(["ali"], iterations=3000)   # stable


def test_a_mixture_grid_with_overridden_settings_is_another_record():
    grid = {"methods": ["iwgan"], "seeds": [0]}
    plain = [make_config("converged", method="iwgan")]
    averaged = [make_config("converged", method="iwgan", ema=0.999)]
    assert wall_time_key("converged", grid, grid, plain) == "converged"
    assert wall_time_key("converged", grid, grid, averaged).startswith("converged-")
