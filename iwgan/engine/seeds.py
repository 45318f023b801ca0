"""One seed drives every random source of a run.

Training: ``torch.manual_seed(seed)`` right before the method's ``build`` (the
initialisation), then one generator per member for every draw of training, in a fixed
order (the data batch, the latent batch, then the draws the loss asks for). On the CPU
that generator continues the global stream where the build left it, so a run is the
very stream ``torch.manual_seed(seed)`` starts; on a GPU it is a CUDA generator seeded
from the seed. Evaluation draws from generators of its own (:func:`derived_generator`),
so evaluating never shifts the training stream.
"""

from __future__ import annotations

import hashlib

import torch


def derived_seed(seed: int, purpose: str) -> int:
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def derived_generator(seed: int, purpose: str, device="cpu") -> torch.Generator:
    """A generator for one purpose (evaluation, ...), independent of training's stream."""
    return torch.Generator(device=device).manual_seed(derived_seed(seed, purpose))


def training_generator(seed: int, device: torch.device) -> torch.Generator:
    """The generator of a run's training draws; call it right after the build."""
    if torch.device(device).type == "cpu":
        return torch.Generator().set_state(torch.get_rng_state())
    return derived_generator(seed, "training", device)
