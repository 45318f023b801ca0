"""Training an image run through the one trainer (iwgan.engine.trainer): its hooks (the
log, sample grids, checkpoints) and the wrapper that resumes a killed run from its
checkpoint.

Every ``checkpoint_every`` iterations the trainer writes the networks, the optimisers, the
member's generator and the data sampler's state atomically, so ``--resume`` continues a
killed run and reaches the very weights an uninterrupted run reaches (CPU; on CUDA too
with ``deterministic``). Resuming with a different config is refused with the differing
keys listed. Sample grids of a fixed set of latent codes are saved every ``sample_every``
iterations.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from iwgan.data.datasets import BatchSampler, ImageBatches, ImageData, image_grid, to_uint8
from iwgan.engine.devices import check_device
from iwgan.engine.distributed import ONE, World
from iwgan.engine.seeds import derived_generator, derived_seed
from iwgan.engine.trainer import Checkpoint, Hook, LogTo, Progress, Trainer, execution_plan
from iwgan.experiments.image_evaluation import generate_images
from iwgan.files import append_jsonl, atomic_write_bytes, save_with


def save_png(path: Path, grid: np.ndarray) -> None:
    image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    save_with(path, lambda f: image.save(f, format="PNG"))



class SampleGrids(Hook):
    """A PNG grid of G on 64 fixed latent codes every ``sample_every`` iterations and at
    the last, under ``run_dir/samples/`` (its time is not training time)."""

    def __init__(self, cfg, run_dir: Path, plan: dict):
        self.cfg, self.dir, self.plan = cfg, Path(run_dir) / "samples", plan
        self.z = torch.randn(64, cfg.z_dim, generator=derived_generator(cfg.seed, "sample-grid"))

    def on_iteration(self, trainer: Trainer) -> None:
        it = trainer.iteration
        if it % self.cfg.sample_every == 0 or it == self.cfg.iterations:
            with trainer.clock.evaluation():
                grid = to_uint8(generate_images(self.cfg, trainer.member_models(0), self.z,
                                                self.plan)).numpy()
                save_png(self.dir / f"iter_{it:07d}.png", image_grid(grid, 8))



def train_images(cfg, train: ImageData, run_dir: Path, resume: bool = False,
                 progress=None, stop_after: int | None = None, world: World = ONE,
                 device: str | None = None, hooks=()):
    """Train ``cfg.method`` on ``train``; returns the trainer's MemberResult.

    ``resume`` continues from ``run_dir/checkpoint.pt`` if there is one. ``stop_after``
    stops after that iteration without the run's end, as a kill would: for tests.
    ``progress(n)`` is told of every finished iteration (and, resumed, of those before).
    Under torchrun (``world``, ``device``: iwgan.engine.distributed.setup) every rank
    trains its shard and rank 0 alone writes the log, the sample grids and the
    checkpoints. ``hooks`` are added to these (an evaluation curve, say).
    """
    if tuple(train.shape) != cfg.input_shape:
        raise ValueError(f"{cfg.arch} networks take images of shape {cfg.input_shape}, the "
                         f"{train.name} data has {train.shape}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"
    data = ImageBatches(train.images, [BatchSampler(len(train), cfg.batch_size,
                                                    derived_seed(cfg.seed, "data"))],
                        check_device(device or cfg.device))
    own = [LogTo([functools.partial(append_jsonl, log_path)]),
           SampleGrids(cfg, run_dir, execution_plan(cfg)),
           Checkpoint(ckpt_path, cfg.checkpoint_every)] if world.main else []
    own += [Progress(progress)] if progress else []
    trainer = Trainer([cfg], data, [*own, *hooks], resume=ckpt_path if resume else None,
                      world=world, device=device)
    if world.main:
        if trainer.resumed_from:
            keep_log_until(log_path, trainer.resumed_from)
        else:
            log_path.unlink(missing_ok=True)
    return trainer.fit(until=stop_after)[0]


def keep_log_until(path: Path, iteration: int) -> None:
    """Drop log lines past the checkpoint: the resumed run writes them again."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["iteration"] <= iteration]
    atomic_write_bytes(path, "".join(f"{line}\n" for line in kept).encode())
