"""Networks, defined once (Appendix D of the paper). Every method imports them from here.

Mixture MLPs (Appendix D1), ReLU between layers:

    encoder Q:   x in R^2 -> 1024 -> 512 -> 256 -> 128 -> 5
    generator G: z in R^5 -> 512 -> 512 -> 512 -> 2
    critic f:    x in R^2 -> 512 -> 512 -> 512 -> 1

``width`` multiplies every hidden size (rounded, at least 1), so a CPU profile trains
smaller copies of the same shapes; ``width=1`` is the paper's network. The image
networks of Appendices D2 (``"mnist"``) and D3 (``"celeba"``) are below, with the choices
the paper leaves open stated in their docstrings.
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


# Image networks (Appendices D2, D3). Shared conventions, identical for every method:
# - images are in [0, 1] and every generator ends in a sigmoid (the authors' MNIST code
#   ends in a sigmoid; one convention for both datasets keeps FID inputs in [0, 1]);
# - every critic is an nn.Sequential whose first module is its first convolution (ALI
#   adds z's projection to critic[0](x), broadcast over the spatial dimensions);
# - every encoder ends in Flatten -> Linear(features, z_dim), so encoder[-1] is a linear
#   head on encoder[:-1](x) (ALI's stochastic encoder widens it with a log-std head).
MNIST_CHANNELS = (128, 256, 512)
CELEBA_CHANNELS = (128, 256, 512)
CELEBA_GENERATOR_CHANNELS = (1024, 512, 256, 128)


def _mnist_downsampler(channels: tuple[int, ...], in_channels: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for c_in, c_out in zip((in_channels, *channels[:-1]), channels):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=5, stride=2, padding=2), nn.ReLU()]
    return layers


def mnist_convs(width: float = 1.0, z_dim: int = 8, channels: int = 1) -> Networks:
    """Appendix D2, x in [0, 1]^(1x28x28):

        encoder Q:   Conv128 -> ReLU -> Conv256 -> ReLU -> Conv512 -> ReLU -> FC_z
        generator G: z -> FC 4x4x512 -> ReLU -> ConvT256 -> ReLU -> ConvT128 -> ReLU
                       -> ConvT1 -> sigmoid
        critic f:    Conv128 -> ReLU -> Conv256 -> ReLU -> Conv512 -> ReLU -> FC1

    Open in the paper, chosen here: 5x5 kernels with stride 2 and padding 2 (the WGAN-GP
    MNIST networks), so 28 -> 14 -> 7 -> 4 down and 4 -> 7 -> 14 -> 28 up (output padding
    0, 1, 1); no normalisation (D2 lists none; a batch-normalised critic would also break
    the per-sample gradient penalty); a sigmoid on G's output (the authors' code).
    """
    ch = scaled(MNIST_CHANNELS, width)
    flat = ch[-1] * 4 * 4
    return Networks(
        encoder=nn.Sequential(*_mnist_downsampler(ch, channels), nn.Flatten(),
                              nn.Linear(flat, z_dim)),
        generator=nn.Sequential(
            nn.Linear(z_dim, flat), nn.ReLU(), nn.Unflatten(1, (ch[-1], 4, 4)),
            nn.ConvTranspose2d(ch[2], ch[1], 5, stride=2, padding=2, output_padding=0),
            nn.ReLU(),
            nn.ConvTranspose2d(ch[1], ch[0], 5, stride=2, padding=2, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(ch[0], channels, 5, stride=2, padding=2, output_padding=1),
            nn.Sigmoid()),
        critic=nn.Sequential(*_mnist_downsampler(ch, channels), nn.Flatten(),
                             nn.Linear(flat, 1)),
    )


def _celeba_downsampler(channels: tuple[int, ...], in_channels: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip((in_channels, *channels[:-1]), channels)):
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1))
        if i:
            layers.append(nn.InstanceNorm2d(c_out, affine=True))
        layers.append(nn.LeakyReLU(0.2))
    return layers


def celeba_convs(width: float = 1.0, z_dim: int = 64, channels: int = 3,
                 image_size: int = 64) -> Networks:
    """Appendix D3, x in [0, 1]^(3x64x64):

        encoder Q:   Conv128 -> LReLU -> Conv256 -> IN -> LReLU -> Conv512 -> IN -> LReLU
                       -> "Conv" to z
        generator G: z -> FC 4x4x1024 -> BN -> ReLU -> ConvT512 -> BN -> ReLU
                       -> ConvT256 -> BN -> ReLU -> ConvT128 -> BN -> ReLU -> ConvT3 -> sigmoid
        critic f:    as the encoder, with a last "Conv" to 1

    Open in the paper, chosen here: 4x4 kernels, stride 2, padding 1 (DCGAN), so
    64 -> 32 -> 16 -> 8 down and 4 -> 8 -> 16 -> 32 -> 64 up; the last "Conv" of Q and f
    covers the whole 8x8 map, which is exactly a fully connected layer, written as
    Flatten -> Linear (D3's "Conv_1" read literally would give an encoder a single
    number; we give it z_dim outputs); instance norm with a learned affine (per-sample,
    so the gradient penalty stays per-sample); LeakyReLU slope 0.2 (DCGAN); BN + ReLU
    after G's FC projection (D3 lists none there, but without a non-linearity the FC and
    the first ConvT compose to one linear map; DCGAN and D2 put one there); a sigmoid
    on G's output, as for MNIST.
    """
    if image_size % 16:
        raise ValueError(f"celeba networks need an image size divisible by 16, "
                         f"got {image_size}")
    ch = scaled(CELEBA_CHANNELS, width)
    g = scaled(CELEBA_GENERATOR_CHANNELS, width)
    side = image_size // 8
    flat = ch[-1] * side * side
    g_side = image_size // 16
    up: list[nn.Module] = []
    for c_in, c_out in zip(g[:-1], g[1:]):
        up += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out),
               nn.ReLU()]
    return Networks(
        encoder=nn.Sequential(*_celeba_downsampler(ch, channels), nn.Flatten(),
                              nn.Linear(flat, z_dim)),
        generator=nn.Sequential(
            nn.Linear(z_dim, g[0] * g_side * g_side), nn.Unflatten(1, (g[0], g_side, g_side)),
            nn.BatchNorm2d(g[0]), nn.ReLU(), *up,
            nn.ConvTranspose2d(g[-1], channels, 4, stride=2, padding=1), nn.Sigmoid()),
        critic=nn.Sequential(*_celeba_downsampler(ch, channels), nn.Flatten(),
                             nn.Linear(flat, 1)),
    )


ARCHITECTURES = {"mixture": mixture_mlps, "mnist": mnist_convs, "celeba": celeba_convs}
# The shape of one data point of each architecture (the mixture's is a 2-d point).
INPUT_SHAPES = {"mixture": (2,), "mnist": (1, 28, 28), "celeba": (3, 64, 64)}


def build_networks(arch: str, width: float, z_dim: int) -> Networks:
    """The shared encoder, generator and critic of an architecture preset."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](width=width, z_dim=z_dim)
