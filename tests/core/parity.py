"""The parity check shared by the mixture and image tests: a method's encoder, generator
and critic have exactly the parameter shapes of the shared definition."""

from iwgan.core.methods import get_method
from iwgan.core.networks import build_networks


def assert_uses_shared_networks(method: str, cfg) -> None:
    models = get_method(method).build(cfg)
    shared = build_networks(cfg.arch, cfg.width, cfg.z_dim)
    for name in ("encoder", "generator", "critic"):
        ours = getattr(models, name)
        if ours is None:
            assert not get_method(method).has_encoder and name == "encoder"
            continue
        ref = getattr(shared, name)
        assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()], name
