"""The networks of Appendix D, defined once: every method uses them."""

import pytest

from iwgan.core.methods import METHOD_NAMES
from iwgan.core.networks import build_networks
from iwgan.engine.config import make_config
from tests.core.parity import assert_uses_shared_networks


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
