"""Data-parallel training over several processes, launched by torchrun:

    torchrun --nproc_per_node N -m iwgan images --dataset celeba ...

Every rank builds the same networks from the same seed and draws the same global batch
(``batch_size``) from the same generators; rank r trains on rows
[r·B/N, (r+1)·B/N) of it, and after every backward pass the gradients are averaged over
the ranks (one ``all_reduce`` of the flattened gradients of the parameters being
stepped), so every rank takes the same optimiser step: the step one process takes on the
global batch, for losses that are means over samples (WGAN-GP, ALI, α-GAN; iWGAN's MMD
penalty and a generator's batch norm are computed on each rank's shard, as in any
data-parallel GAN, so iWGAN matches the one-process run only approximately). NCCL on
CUDA (rank r on ``cuda:<local rank>``), gloo on CPU. Rank 0 alone writes checkpoints,
logs, sample grids and results; metrics are computed once, on rank 0.

The gradients are averaged by hand rather than by ``DistributedDataParallel``'s wrapper
because each phase of a method steps a different subset of its networks (the critic, or
G and Q) from one ``Models``; the arithmetic is DDP's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, batch_size: int) -> slice:
        """This rank's rows of a global batch."""
        per = batch_size // self.size
        return slice(self.rank * per, (self.rank + 1) * per)


ONE = World()   # a single process


def world() -> World:
    """This process's place in a torchrun launch (one process: rank 0 of 1)."""
    if "WORLD_SIZE" not in os.environ:
        return ONE
    return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                 int(os.environ.get("LOCAL_RANK", 0)))


def setup(device: str, batch_size: int) -> tuple[World, str]:
    """Join the process group (if launched by torchrun) and return this rank's device;
    refuses what cannot work, before anything is written."""
    w = world()
    if not w.distributed:
        return w, device
    if batch_size % w.size:
        raise ValueError(f"the global batch {batch_size} does not split over {w.size} "
                         f"processes; use a --batch-size divisible by {w.size}")
    cuda = torch.device(device).type == "cuda"
    if cuda:
        count = torch.cuda.device_count()
        if w.local_rank >= count:
            raise ValueError(f"torchrun started more processes per node than this machine "
                             f"has GPUs ({count}); use --nproc_per_node {count} or fewer")
        device = f"cuda:{w.local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return w, device


def average_gradients(params) -> None:
    """Average the gradients of ``params`` over the ranks (in place)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def average(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over the ranks (logged losses, so that rank 0 logs the batch's)."""
    t = t.clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
