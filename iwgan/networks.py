"""Networks, defined once (Appendix D of the paper). Every method imports them from here.

Mixture MLPs (Appendix D1), ReLU between layers:

    encoder Q:   x in R^2 -> 1024 -> 512 -> 256 -> 128 -> 5
    generator G: z in R^5 -> 512 -> 512 -> 512 -> 2
    critic f:    x in R^2 -> 512 -> 512 -> 512 -> 1

``width`` multiplies every hidden size (rounded, at least 1), so a CPU profile trains
smaller copies of the same shapes; ``width=1`` is the paper's network. Image networks
(Appendices D2, D3) join :data:`ARCHITECTURES` under their own names.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

ENCODER_HIDDEN = (1024, 512, 256, 128)
GENERATOR_HIDDEN = (512, 512, 512)
CRITIC_HIDDEN = (512, 512, 512)


def scaled(sizes: tuple[int, ...], width: float) -> tuple[int, ...]:
    if width <= 0:
        raise ValueError(f"width multiplier must be positive, got {width}")
    return tuple(max(1, round(h * width)) for h in sizes)


def mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    """Linear layers with ReLU between them and none after the last."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


@dataclass
class Networks:
    """The three shared networks; a method that has no encoder simply ignores it."""

    encoder: nn.Module
    generator: nn.Module
    critic: nn.Module


def mixture_mlps(width: float = 1.0, x_dim: int = 2, z_dim: int = 5) -> Networks:
    return Networks(
        encoder=mlp((x_dim, *scaled(ENCODER_HIDDEN, width), z_dim)),
        generator=mlp((z_dim, *scaled(GENERATOR_HIDDEN, width), x_dim)),
        critic=mlp((x_dim, *scaled(CRITIC_HIDDEN, width), 1)),
    )


ARCHITECTURES = {"mixture": mixture_mlps}


def build_networks(arch: str, width: float, z_dim: int) -> Networks:
    """The shared encoder, generator and critic of an architecture preset."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](width=width, z_dim=z_dim)
