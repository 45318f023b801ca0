"""The RING (8), SPIRAL (20) and GRID (25) Gaussian mixtures, in two presets.

``paper``: the generators of the code the iWGAN authors' group published (the WGAN-GP toy
generators), see ``docs/protocols``: ring of radius 2 / 1.414 with std 0.02 / 1.414,
grid (2i, 2j) / 2.828 with std 0.02 / 2.828, spiral k*d at radius 0.1 + 0.1*k*d
(d = 2*pi/12) with std 0.02, unscaled.

``literature``: the standard mode-coverage protocol (VEEGAN, PacGAN, GDPP): ring of 8 at
radius 1 with std 0.01, grid (-4 + 2i, -4 + 2j) with std 0.05. The literature has no
spiral; the paper preset's spiral is used under both names, and reports say so.

Every component is isotropic with one shared std, so a mixture is just its centres and
std, which is all the mode-coverage scorer needs. Components are equally weighted.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

MIXTURES = ("ring", "spiral", "grid")
PRESETS = ("paper", "literature")


@dataclass(frozen=True)
class Mixture:
    name: str
    preset: str
    centres: np.ndarray  # (K, 2)
    std: float

    @property
    def n_modes(self) -> int:
        return len(self.centres)

    @functools.cached_property
    def _centres(self) -> dict:
        return {}   # device -> the centres as a float32 tensor there, made once

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n points: a uniformly chosen centre plus isotropic Gaussian noise, on the
        generator's device."""
        device = generator.device if generator is not None else torch.device("cpu")
        if device not in self._centres:
            self._centres[device] = torch.as_tensor(self.centres, dtype=torch.float32,
                                                    device=device)
        centres = self._centres[device]
        idx = torch.randint(len(centres), (n,), generator=generator, device=device)
        noise = torch.randn(n, centres.shape[1], generator=generator, device=device)
        return centres[idx] + self.std * noise

    def to_json(self) -> dict:
        return {"name": self.name, "preset": self.preset, "std": self.std,
                "centres": self.centres.tolist()}


def _ring(preset: str) -> tuple[np.ndarray, float]:
    # 2*pi*i/8, not np.linspace(0, 2*pi, 8), which repeats angle 0 and gives 7 modes.
    angles = 2 * np.pi * np.arange(8) / 8
    unit = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if preset == "paper":
        return 2 * unit / 1.414, 0.02 / 1.414
    return unit, 0.01


def _grid(preset: str) -> tuple[np.ndarray, float]:
    ij = np.array([(i, j) for i in range(-2, 3) for j in range(-2, 3)], dtype=float)
    if preset == "paper":
        return 2 * ij / 2.828, 0.02 / 2.828
    return 2 * ij, 0.05


def _spiral(preset: str) -> tuple[np.ndarray, float]:
    d = 2 * math.pi / 12
    k = np.arange(20)
    radius = 0.1 + 0.1 * k * d
    return np.stack([radius * np.cos(k * d), radius * np.sin(k * d)], axis=1), 0.02


class MixtureBatches:
    """The training data of a run's members: member k's batches from its own mixture
    (the members of one stack may differ in mixture and preset), drawn from its own
    generator."""

    def __init__(self, cfgs):
        self.mixtures = [get_mixture(c.mixture, c.preset) for c in cfgs]

    def sample(self, k: int, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.mixtures[k].sample(n, generator)


_BUILDERS = {"ring": _ring, "spiral": _spiral, "grid": _grid}


def get_mixture(name: str, preset: str = "paper", std: float | None = None) -> Mixture:
    """A mixture by name and preset; ``std`` overrides the preset's noise level."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown mixture {name!r}; choose one of {list(MIXTURES)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
    centres, preset_std = _BUILDERS[name](preset)
    if std is not None and std <= 0:
        raise ValueError(f"std must be positive, got {std}")
    return Mixture(name, preset, centres, preset_std if std is None else std)
