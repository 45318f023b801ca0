import numpy as np
import pytest
import torch

from iwgan.data.mixtures import get_mixture


def test_ring_has_eight_distinct_centres_on_its_radius():
    for preset, radius, std in [("paper", 2 / 1.414, 0.02 / 1.414), ("literature", 1.0, 0.01)]:
        m = get_mixture("ring", preset)
        assert len(np.unique(m.centres.round(9), axis=0)) == 8
        assert np.allclose(np.linalg.norm(m.centres, axis=1), radius)
        assert m.std == pytest.approx(std)


def test_grid_and_spiral_presets():
    lit = get_mixture("grid", "literature")
    assert lit.n_modes == 25 and lit.centres.min() == -4 and lit.centres.max() == 4
    assert lit.std == 0.05
    paper = get_mixture("grid", "paper")
    assert np.allclose(np.diff(np.unique(paper.centres[:, 0])), 2 / 2.828)
    spiral = get_mixture("spiral", "paper")
    assert spiral.n_modes == 20 and spiral.std == 0.02
    assert np.linalg.norm(spiral.centres[0]) == pytest.approx(0.1)


def test_sampling_is_seeded_and_std_can_be_overridden():
    m = get_mixture("grid", "paper", std=0.1)
    a = m.sample(100, torch.Generator().manual_seed(3))
    b = m.sample(100, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and m.std == 0.1


@pytest.mark.parametrize("kwargs, word", [({"name": "moons"}, "mixture"),
                                          ({"name": "ring", "preset": "veegan"}, "preset"),
                                          ({"name": "ring", "std": -1.0}, "std")])
def test_bad_names_are_refused_with_the_valid_choices(kwargs, word):
    with pytest.raises(ValueError, match=word):
        get_mixture(**kwargs)
