"""Image experiments (Section 5.2, Appendices F and G): config, a resumable training loop,
evaluation, and the results table.

The loop is :func:`iwgan.training.train`'s, on images: each method's phases, one batch
and one latent draw per step, every random source from one seed. What it adds is
survival: every ``checkpoint_every`` iterations the networks, the optimisers, torch's
RNG state(s) and the data sampler's state are written atomically, so ``--resume``
continues a killed run and reaches the very weights an uninterrupted run reaches (CPU;
on CUDA too with ``deterministic``). Resuming with a different config is refused with
the differing keys listed. Sample grids of a fixed set of latent codes are saved every
``sample_every`` iterations.

A run's record is ``runs/<run_id>/`` (config.json, manifest.json, log.jsonl,
checkpoint.pt, samples/); its results are one row of ``results/images.csv`` and the
arrays the figures are drawn from, ``results/images/<run_id>.npz`` (uint8 images and
float32 codes and errors: small enough to commit).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from iwgan.config import check_ranges
from iwgan.datasets import DATASETS, BatchSampler, ImageData, to_uint8
from iwgan.losses import mmd_imq, reconstruction_error
from iwgan.methods import METHOD_NAMES, Models, get_method, resolve_options
from iwgan.networks import INPUT_SHAPES
from iwgan.records import (
    atomic_write_bytes,
    atomic_write_text,
    read_results,
    upsert_results,
    write_json,
)
from iwgan.training import Diverged, configure_torch, derived_generator, derived_seed

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class ImageConfig:
    method: str = "iwgan"
    dataset: str = "digits"        # digits, mnist or celeba (iwgan.datasets)
    seed: int = 0
    profile: str = "smoke"
    arch: str = "mnist"            # "mnist" (Appendix D2) or "celeba" (D3)
    width: float = 1.0             # multiplier on every channel count; 1 = the paper's
    z_dim: int = 8
    iterations: int = 10_000       # outer iterations (each method's phases once)
    batch_size: int = 250
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.9
    n_critic: int = 5              # critic steps per outer iteration (iwgan, wgan_gp)
    lambda_gp: float = 5.0
    lambda_mmd: float = 10.0
    crop: int | None = 140         # CelebA center crop in px (None: no crop)
    image_size: int = 64           # CelebA side after resizing
    max_train: int | None = None   # keep only the first N training images (smoke runs)
    metric: str = "fid"            # "fid" (Inception) or "fd-cnn" (FD-<data>CNN, offline)
    fid_samples: int = 10_000      # generated samples, and real ones for the reference
    classifier_steps: int = 400    # training steps of FD-<data>CNN's classifier (fd-cnn)
    validation_samples: int = 10_000  # validation images encoded for Figs 9, 12, 14
    eval_batch: int = 250
    log_every: int = 50
    checkpoint_every: int = 500
    sample_every: int = 500
    threads: int = 0
    deterministic: bool = False
    device: str = "cpu"
    precision: str = "fp32"        # "bf16": autocast on CUDA (fp32 on CPU, recorded)
    channels_last: bool = False    # CUDA only (ignored on CPU, recorded)
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        from iwgan.fid import METRICS

        for name, value, choices in (("method", self.method, METHOD_NAMES),
                                     ("dataset", self.dataset, DATASETS),
                                     ("arch", self.arch, ("mnist", "celeba")),
                                     ("metric", self.metric, METRICS),
                                     ("precision", self.precision, PRECISIONS)):
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(choices)}")
        check_ranges(self, ("iterations", "batch_size", "n_critic", "z_dim", "fid_samples",
                            "validation_samples", "eval_batch", "classifier_steps",
                            "log_every", "checkpoint_every", "sample_every", "image_size"))
        if self.max_train is not None and self.max_train <= 0:
            raise ValueError(f"max_train must be a positive integer, got {self.max_train}")
        resolve_options(self.method, self.options)

    @property
    def run_id(self) -> str:
        return f"{self.profile}-{self.dataset}-{self.method}-seed{self.seed}"

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.arch == "celeba":
            return (3, self.image_size, self.image_size)
        return INPUT_SHAPES[self.arch]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# Every dataset's fixed settings, then its profiles (budgets). All but "smoke" and the
# digits "cpu" profile are GPU jobs. The paper gives Adam 1e-4 and, for MNIST (the
# authors' code), batch 250, 5 + 5 steps, lambda_MMD 10, lambda_GP 5, z_dim 8, a sigmoid
# output; CelebA's z_dim is 64 (Appendix D3). It gives no iteration budget: ours are
# stated here and in docs/images.md.
DATASET_SETTINGS = {
    "digits": dict(arch="mnist", z_dim=8, crop=None, image_size=28),
    "mnist": dict(arch="mnist", z_dim=8, crop=None, image_size=28),
    "celeba": dict(arch="celeba", z_dim=64, crop=140, image_size=64),
}
IMAGE_PROFILES: dict[str, dict[str, dict]] = {
    "digits": {
        # The MNIST settings of the paper on the 1,437 training digits.
        "paper": dict(width=1.0, iterations=10_000, batch_size=250, lr=1e-4, n_critic=5,
                      metric="fd-cnn", fid_samples=2_000),
        # The committed CPU run, at most 45 minutes on 2 shared cores for 4 methods x 1
        # seed: quarter-width D2 networks, batch 64, 2 + 2 steps, 1,000 iterations (one
        # thread: ~1.3 s per iteration of all four methods together, up to ~2.2 s when
        # the other core is busy). lr 1e-3, as the mixtures' quick profile: at 150
        # iterations iwgan reached FD-digitsCNN 1,808 and reconstruction error 4.3 with
        # it, against 4,016 and 8.0 with 5e-4.
        "cpu": dict(width=0.25, iterations=1_000, batch_size=64, lr=1e-3, n_critic=2,
                    metric="fd-cnn", fid_samples=2_000, log_every=20, checkpoint_every=100,
                    sample_every=200, threads=1),
        "smoke": dict(width=0.05, iterations=4, batch_size=16, lr=5e-4, n_critic=1,
                      metric="fd-cnn", fid_samples=200, validation_samples=100,
                      classifier_steps=40,
                      log_every=2, checkpoint_every=2, sample_every=2, threads=1),
    },
    "mnist": {
        "paper": dict(width=1.0, iterations=10_000, batch_size=250, lr=1e-4, n_critic=5,
                      metric="fid", fid_samples=10_000),
        "smoke": dict(width=0.125, iterations=20, batch_size=32, lr=5e-4, n_critic=2,
                      max_train=2_000, metric="fd-cnn", fid_samples=500, classifier_steps=100,
                      validation_samples=500, log_every=5, checkpoint_every=10,
                      sample_every=10, threads=1),
    },
    "celeba": {
        "paper": dict(width=1.0, iterations=20_000, batch_size=64, lr=1e-4, n_critic=5,
                      metric="fid", fid_samples=10_000),
        "smoke": dict(width=0.125, iterations=10, batch_size=16, lr=5e-4, n_critic=1,
                      max_train=512, metric="fid", fid_samples=64, validation_samples=64,
                      eval_batch=32, log_every=5, checkpoint_every=5, sample_every=5,
                      threads=1),
    },
}
# Keys a resumed run may change: the budget (nothing depends on the total) and how
# often it writes things down.
RESUMABLE_CHANGES = ("iterations", "log_every", "checkpoint_every", "sample_every")


def make_image_config(dataset: str, profile: str, **overrides) -> ImageConfig:
    """The dataset's settings and profile with ``overrides`` (None = keep) applied."""
    if dataset not in IMAGE_PROFILES:
        raise ValueError(f"unknown dataset {dataset!r}; valid choices: {', '.join(DATASETS)}")
    if profile not in IMAGE_PROFILES[dataset]:
        raise ValueError(f"unknown profile {profile!r} for {dataset}; valid choices: "
                         f"{', '.join(IMAGE_PROFILES[dataset])}")
    known = {f.name for f in dataclasses.fields(ImageConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
    values = {**DATASET_SETTINGS[dataset], **IMAGE_PROFILES[dataset][profile],
              **{k: v for k, v in overrides.items() if v is not None}}
    return ImageConfig(dataset=dataset, profile=profile, **values)


# --- devices and precision --------------------------------------------------------------

def execution_plan(cfg) -> dict:
    """What actually runs: bf16 and channels_last are CUDA options; on CPU they fall back
    to fp32 and the default layout, with a message, and the fallback is recorded."""
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device!r} asked for, but torch sees no CUDA device; "
                         "use --device cpu")
    cuda = cfg.device.startswith("cuda")
    plan = {"precision_used": cfg.precision if cuda else "fp32",
            "channels_last_used": bool(cfg.channels_last and cuda), "notes": []}
    if cfg.precision == "bf16" and not cuda:
        plan["notes"].append("bf16 autocast is a CUDA option; this CPU run uses fp32")
    if cfg.channels_last and not cuda:
        plan["notes"].append("channels_last is a CUDA option; this CPU run uses the default "
                             "memory layout")
    return plan


def autocast(plan: dict, device: str):
    if plan["precision_used"] == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- checkpoints ------------------------------------------------------------------------

class ResumeError(ValueError):
    pass


def config_changes(saved: dict, cfg) -> list[str]:
    now = cfg.to_dict()
    return [f"{k} (checkpoint {saved.get(k)!r}, now {now.get(k)!r})"
            for k in sorted(set(saved) | set(now))
            if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k)]


def load_checkpoint(path: Path, cfg) -> dict:
    """The checkpoint at ``path``, refused if it was written under another config."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ResumeError(f"{path}: unreadable checkpoint ({err}); run without --resume to "
                          "start this run over") from err
    changes = config_changes(ckpt["config"], cfg)
    if changes:
        raise ResumeError(f"cannot resume {cfg.run_id}: its config differs from the "
                          f"checkpoint's ({path}) in: {'; '.join(changes)}. Resume with the "
                          "original values, or run without --resume to start it over (only "
                          f"{', '.join(RESUMABLE_CHANGES)} may change on resume)")
    return ckpt


def rng_state(device: str) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, device: str) -> None:
    torch.set_rng_state(state["cpu"])
    if device.startswith("cuda") and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, cfg, models: Models, sampler: BatchSampler, iteration: int,
                    train_seconds: float) -> None:
    buf = io.BytesIO()
    torch.save({"config": cfg.to_dict(), "iteration": iteration,
                "train_seconds": train_seconds, **models.state_dict(),
                "sampler": sampler.state_dict(), "rng": rng_state(cfg.device)}, buf)
    atomic_write_bytes(path, buf.getvalue())


# --- the loop ---------------------------------------------------------------------------

@dataclass
class ImageTrainResult:
    models: Models
    iterations: int              # the last iteration reached
    wall_time: float             # training seconds, earlier sessions of a resumed run included
    resumed_from: int = 0        # iteration the checkpoint held (0: fresh)
    plan: dict = field(default_factory=dict)


def set_mode(models: Models, training: bool) -> None:
    for module in models.modules().values():
        module.train(training)


def image_grid(images: np.ndarray, nrow: int, pad: int = 2) -> np.ndarray:
    """uint8 (N, C, H, W) -> one uint8 (H', W', C) grid, ``nrow`` images per row."""
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[top:top + h, left:left + w] = images[i].transpose(1, 2, 0)
    return grid


def save_png(path: Path, grid: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


@torch.no_grad()
def in_eval_batches(cfg, models: Models, inputs: torch.Tensor, fn, plan: dict) -> torch.Tensor:
    """``fn(models, batch)`` over ``inputs`` in ``cfg.eval_batch`` chunks on the run's
    device, the networks in eval mode (batch norm on its running statistics); float32 on
    CPU."""
    set_mode(models, False)
    try:
        out = []
        for i in range(0, inputs.shape[0], cfg.eval_batch):
            batch = inputs[i:i + cfg.eval_batch].to(cfg.device)
            with autocast(plan, cfg.device):
                out.append(fn(models, batch).float().cpu())
        return torch.cat(out)
    finally:
        set_mode(models, True)


def generate_images(cfg, models: Models, z: torch.Tensor, plan: dict) -> torch.Tensor:
    """G(z), in eval batches."""
    return in_eval_batches(cfg, models, z, get_method(cfg.method).generate, plan)


def train_images(cfg, train: ImageData, run_dir: Path, resume: bool = False,
                 progress=None, stop_after: int | None = None,
                 on_start=None) -> ImageTrainResult:
    """Train ``cfg.method`` on ``train``; raises :class:`Diverged` on a NaN/inf loss.

    ``resume`` continues from ``run_dir/checkpoint.pt`` if there is one. ``stop_after``
    stops (with a checkpoint) after that iteration, as a kill would: for tests.
    ``progress(n)`` is told of every finished iteration, ``on_start(iteration)`` of the
    iteration training starts after (0, or the checkpoint's).
    """
    if tuple(train.shape) != cfg.input_shape:
        raise ValueError(f"{cfg.arch} networks take images of shape {cfg.input_shape}, the "
                         f"{train.name} data has {train.shape}")
    plan = execution_plan(cfg)
    configure_torch(cfg)
    method = get_method(cfg.method)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"
    log_path = run_dir / "log.jsonl"
    ckpt = load_checkpoint(ckpt_path, cfg) if resume and ckpt_path.exists() else None

    torch.manual_seed(cfg.seed)
    models = method.build(cfg)
    sampler = BatchSampler(len(train), cfg.batch_size, derived_seed(cfg.seed, "data"))
    memory_format = (torch.channels_last if plan["channels_last_used"]
                     else torch.contiguous_format)
    for module in models.modules().values():
        module.to(cfg.device, memory_format=memory_format)
    start_it, previous_seconds = 0, 0.0
    if ckpt is not None:
        # After the move: Adam's state is loaded onto the device of its parameters.
        models.load_state_dict(ckpt)
        sampler.load_state_dict(ckpt["sampler"])
        set_rng_state(ckpt["rng"], cfg.device)
        start_it, previous_seconds = ckpt["iteration"], ckpt["train_seconds"]
        keep_log_until(log_path, start_it)
    else:
        log_path.unlink(missing_ok=True)
    images = train.images.to(cfg.device)
    grid_z = torch.randn(64, cfg.z_dim, generator=derived_generator(cfg.seed, "sample-grid"))
    steps = method.phases(cfg)
    result = ImageTrainResult(models=models, iterations=start_it, wall_time=previous_seconds,
                              resumed_from=start_it, plan=plan)
    last = cfg.iterations if stop_after is None else min(stop_after, cfg.iterations)
    if on_start:
        on_start(start_it)
    start = time.perf_counter()
    for it in range(start_it + 1, last + 1):
        logs = {}
        for step, count in steps:
            for _ in range(count):
                index = sampler.next().to(cfg.device)
                x = images[index].float().div_(255)
                if plan["channels_last_used"]:
                    x = x.contiguous(memory_format=torch.channels_last)
                z = torch.randn(cfg.batch_size, cfg.z_dim, device=cfg.device)
                with autocast(plan, cfg.device):
                    logs.update(step(models, x, z, cfg))
        values = dict(zip(logs, torch.stack([v.float() for v in logs.values()]).tolist()))
        if not all(math.isfinite(v) for v in values.values()):
            raise Diverged(it, values)
        result.iterations = it
        result.wall_time = previous_seconds + time.perf_counter() - start
        if progress:
            progress(1)
        if it % cfg.log_every == 0 or it == cfg.iterations:
            with open(log_path, "a") as f:
                f.write(json.dumps({"iteration": it, "wall_time": result.wall_time,
                                    **values}) + "\n")
        if it % cfg.sample_every == 0 or it == cfg.iterations:
            grid = to_uint8(generate_images(cfg, models, grid_z, plan)).numpy()
            save_png(run_dir / "samples" / f"iter_{it:07d}.png", image_grid(grid, 8))
        if it % cfg.checkpoint_every == 0 or it == last:
            save_checkpoint(ckpt_path, cfg, models, sampler, it, result.wall_time)
    return result


def keep_log_until(path: Path, iteration: int) -> None:
    """Drop log lines past the checkpoint: the resumed run writes them again."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["iteration"] <= iteration]
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


# --- evaluation -------------------------------------------------------------------------

INTERPOLATION_PAIRS = 8
INTERPOLATION_STEPS = 10
GRID_SAMPLES = 64
RECONSTRUCTIONS = 16
BEST_WORST = 8
CODES_KEPT = 1_000


def evaluate_images(cfg, models: Models, validation: ImageData, extractor, reference,
                    plan: dict) -> tuple[dict, dict]:
    """The metric and the figure arrays of a trained run, from evaluation-only
    generators: (metrics for the results row, arrays for results/images/<run>.npz)."""
    from iwgan.fid import distance_to_reference

    method = get_method(cfg.method)
    gen = derived_generator(cfg.seed, "evaluation")

    def generated_batches():
        for i in range(0, cfg.fid_samples, cfg.eval_batch):
            b = min(cfg.eval_batch, cfg.fid_samples - i)
            z = torch.randn(b, cfg.z_dim, generator=gen)
            yield generate_images(cfg, models, z, plan)

    metrics = distance_to_reference(extractor, generated_batches(), cfg.fid_samples, reference)
    figure_gen = derived_generator(cfg.seed, "figures")
    arrays = {"samples": to_uint8(generate_images(
        cfg, models, torch.randn(GRID_SAMPLES, cfg.z_dim, generator=figure_gen), plan)).numpy()}
    n_val = min(cfg.validation_samples, len(validation))
    pairs = torch.randperm(n_val, generator=figure_gen)[:2 * INTERPOLATION_PAIRS]
    pairs = pairs.view(-1, 2) if len(pairs) >= 2 else pairs.repeat(2).view(-1, 2)
    weights = torch.linspace(0, 1, INTERPOLATION_STEPS)
    if method.HAS_ENCODER:
        real = validation.images[:n_val]
        codes = encode_images(cfg, models, real, plan)
        recon = generate_images(cfg, models, codes, plan)
        errors = torch.cat([reconstruction_error(validation.batch(slice(i, i + 1000)),
                                                 recon[i:i + 1000])
                            for i in range(0, n_val, 1000)])
        quality = torch.exp(-errors)
        order = torch.argsort(quality, descending=True, stable=True)
        best, worst = order[:BEST_WORST], order.flip(0)[:BEST_WORST]
        ends = codes[pairs]                       # (pairs, 2, z)
        arrays.update(
            interp_kind=np.array("encoded validation pairs"),
            interp_ends=real[pairs].numpy(),
            recon_real=real[:RECONSTRUCTIONS].numpy(),
            recon=to_uint8(recon[:RECONSTRUCTIONS]).numpy(),
            codes=codes[:CODES_KEPT].numpy().astype(np.float32),
            recon_errors=errors.numpy().astype(np.float32),
            best=real[best].numpy(), best_scores=quality[best].numpy().astype(np.float32),
            best_recon=to_uint8(recon[best]).numpy(),
            worst=real[worst].numpy(), worst_scores=quality[worst].numpy().astype(np.float32),
            worst_recon=to_uint8(recon[worst]).numpy())
        prior = torch.randn(min(n_val, CODES_KEPT), cfg.z_dim, generator=gen)
        metrics.update(recon_error=float(errors.mean()),
                       recon_error_median=float(errors.median()),
                       quality_mean=float(quality.mean()),
                       latent_mmd=float(mmd_imq(codes[:CODES_KEPT], prior)),
                       validation_images=n_val)
    else:
        ends = torch.randn(len(pairs), 2, cfg.z_dim, generator=figure_gen)
        arrays["interp_kind"] = np.array("random prior pairs (no encoder)")
        metrics.update(recon_error=np.nan, recon_error_median=np.nan, quality_mean=np.nan,
                       latent_mmd=np.nan, validation_images=0)
    path_z = (ends[:, :1] * (1 - weights[None, :, None])
              + ends[:, 1:] * weights[None, :, None])   # (pairs, steps, z)
    interp = generate_images(cfg, models, path_z.reshape(-1, cfg.z_dim), plan)
    arrays["interp"] = to_uint8(interp).numpy().reshape(*path_z.shape[:2], *interp.shape[1:])
    return metrics, arrays


def encode_images(cfg, models: Models, images: torch.Tensor, plan: dict) -> torch.Tensor:
    """Q(x) of uint8 images, scaled to [0, 1] on the device, in eval batches."""
    encode = get_method(cfg.method).encode
    return in_eval_batches(cfg, models, images,
                           lambda m, x: encode(m, x.float().div_(255)), plan)


def save_arrays(path: Path, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


# --- results/images.csv -----------------------------------------------------------------

IMAGE_KEY_COLUMNS = ["run_id", "method", "dataset", "seed", "profile"]


def read_image_results(path: Path, required=()) -> pd.DataFrame:
    """Read results/images.csv, refusing files of another schema or with missing columns."""
    return read_results(path, required, keys=IMAGE_KEY_COLUMNS, run_first="run an image "
                        "experiment first (e.g. `nox -s replicate_digits`)")


def upsert_image_results(path: Path, rows: list[dict]) -> pd.DataFrame:
    """Add ``rows``, replacing earlier rows of the same run_id; atomic."""
    return upsert_results(path, rows, keys=IMAGE_KEY_COLUMNS,
                          order=("dataset", "profile", "method", "seed"))


def finished_image_runs(path: Path) -> set[tuple[str, str]]:
    if not Path(path).exists():
        return set()
    df = read_image_results(path)
    done = df[df["status"] == "finished"]
    return set(zip(done["run_id"], done["config_hash"]))


# --- one run, end to end ----------------------------------------------------------------

def run_image_experiment(cfg, train: ImageData, validation: ImageData, extractor, reference,
                         out: Path, resume: bool = False, progress=None,
                         real_floor: float | None = None, on_start=None) -> dict:
    """Train (or resume), evaluate and record one run; returns its results row. A
    diverged run is recorded with its iteration and NaN metrics."""
    from iwgan.records import manifest
    from iwgan.runs import manifest_columns

    run_dir = Path(out) / "runs" / cfg.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    record = manifest(cfg)
    plan = execution_plan(cfg)
    for note in plan["notes"]:
        print(f"note: {note}")
    record["execution"] = plan
    record["data"] = {"train": {**train.describe(), "source": train.source},
                      "validation": {**validation.describe(), "source": validation.source}}
    write_json(run_dir / "config.json", cfg.to_dict())
    write_json(run_dir / "manifest.json", record)
    row = {"run_id": cfg.run_id, "method": cfg.method, "dataset": cfg.dataset,
           "seed": cfg.seed, "profile": cfg.profile, "arch": cfg.arch, "width": cfg.width,
           "z_dim": cfg.z_dim, "iterations": cfg.iterations, "batch_size": cfg.batch_size,
           "lr": cfg.lr, "n_critic": cfg.n_critic, "metric": cfg.metric,
           "train_images": len(train), "preprocessing": train.preprocessing,
           "precision_used": plan["precision_used"],
           "channels_last_used": plan["channels_last_used"],
           "config_hash": cfg.hash(), **manifest_columns(record)}
    try:
        result = train_images(cfg, train, run_dir, resume=resume, progress=progress,
                              on_start=on_start)
    except Diverged as err:
        row.update(status="diverged", diverged_at=err.iteration, iterations_run=err.iteration,
                   fd=np.nan, fd_name=extractor.name, finished=_now())
        write_json(run_dir / "metrics.json", {**_jsonable(row), "error": str(err)})
        return row
    eval_start = time.perf_counter()
    metrics, arrays = evaluate_images(cfg, result.models, validation, extractor, reference,
                                      plan)
    row.update(status="finished", diverged_at=np.nan, iterations_run=result.iterations,
               resumed_from=result.resumed_from, train_seconds=round(result.wall_time, 2),
               seconds_per_iteration=round(result.wall_time / max(result.iterations, 1), 4),
               eval_seconds=round(time.perf_counter() - eval_start, 2), **metrics,
               fd_real_validation=real_floor, fd_note=extractor.note)
    save_arrays(Path(out) / "results" / "images" / f"{cfg.run_id}.npz", arrays)
    row["finished"] = _now()
    write_json(run_dir / "metrics.json", _jsonable(row))
    write_json(run_dir / "manifest.json", {**record, "finished": row["finished"]})
    return row


def _now() -> str:
    from iwgan.records import now

    return now()


def _jsonable(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else
                v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}


# --- the command: python -m iwgan images ------------------------------------------------

def default_image_profile(dataset: str) -> str:
    if torch.cuda.is_available():
        return "paper"
    return "cpu" if dataset == "digits" else "smoke"


def add_arguments(p) -> None:
    from iwgan.cli import positive_int

    p.add_argument("--dataset", required=True, choices=DATASETS,
                   help="digits (offline, sklearn), mnist or celeba")
    p.add_argument("--profile", default=None, help="paper, smoke (and cpu for digits); "
                   "default: paper on CUDA, else cpu for digits and smoke otherwise")
    p.add_argument("--methods", nargs="+", default=list(METHOD_NAMES), choices=METHOD_NAMES,
                   metavar="METHOD", help=f"methods to run (default: all of {METHOD_NAMES})")
    p.add_argument("--seeds", type=positive_int, default=1, help="number of seeds (default 1)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="MNIST root, or CelebA root (torchvision layout) or a plain folder "
                   "of img_align_celeba JPEGs; see docs/images.md")
    p.add_argument("--download", action="store_true",
                   help="download MNIST / CelebA through torchvision (needs internet)")
    p.add_argument("--iterations", type=positive_int, help="override the profile's iterations")
    p.add_argument("--batch-size", type=positive_int, help="override the profile's batch size")
    p.add_argument("--lr", type=float, default=None, help="override the profile's Adam lr")
    p.add_argument("--max-train", type=positive_int, help="use only the first N training images")
    p.add_argument("--metric", choices=("fid", "fd-cnn"), default=None,
                   help="fid (Inception; needs its weights) or fd-cnn (FD-<data>CNN, "
                   "offline, digits and mnist); default: the profile's")
    p.add_argument("--fid-samples", type=positive_int,
                   help="generated (and real reference) samples for the metric: 10000 by "
                   "default on the paper profiles, 50000 for the long protocol")
    p.add_argument("--inception-weights", type=Path, default=None,
                   help="a local pt_inception-2015-12-05-6726825d.pth (default: the torch hub "
                   "cache, $TORCH_HOME/hub/checkpoints/)")
    p.add_argument("--crop", type=lambda t: None if t.lower() == "none" else positive_int(t),
                   default=None, help="CelebA center crop in px, or none (default 140)")
    p.add_argument("--device", default=None,
                   help="cpu or cuda (default: cuda when available)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="bf16 autocast (CUDA only; fp32 on CPU, recorded)")
    p.add_argument("--channels-last", action="store_true",
                   help="channels_last memory format (CUDA only; ignored on CPU, recorded)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: the profile's)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="decoded images, reference statistics, feature networks "
                   "(default $IWGAN_CACHE or ~/.cache/iwgan-bench)")
    p.add_argument("--out", type=Path, default=Path("."),
                   help="root of results/, runs/ and reports/ (default: .)")
    p.add_argument("--resume", action="store_true",
                   help="skip finished runs; continue interrupted ones from their checkpoint")
    p.add_argument("--no-report", action="store_true", help="do not rebuild the reports")


def image_configs(args) -> list[ImageConfig]:
    profile = args.profile or default_image_profile(args.dataset)
    if args.first_seed < 0:
        raise ValueError(f"--first-seed must be non-negative, got {args.first_seed}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    extra = {"crop": args.crop} if args.dataset == "celeba" and args.crop is not None else {}
    return [make_image_config(args.dataset, profile, method=m, seed=s,
                              iterations=args.iterations, batch_size=args.batch_size,
                              lr=args.lr, max_train=args.max_train, metric=args.metric,
                              fid_samples=args.fid_samples, device=device,
                              precision=args.precision, threads=args.threads,
                              channels_last=args.channels_last or None, **extra)
            for m in args.methods
            for s in range(args.first_seed, args.first_seed + args.seeds)]


def build_extractor(cfg, train: ImageData, validation: ImageData, args):
    from iwgan.fid import classifier_extractor, inception_extractor

    device = cfg.device
    if cfg.metric == "fid":
        return inception_extractor(args.inception_weights, device=device)
    return classifier_extractor(train, validation, cache_dir=args.cache_dir, device=device,
                                recipe={"steps": cfg.classifier_steps})


def command(args) -> int:
    """python -m iwgan images: every method x seed on one dataset, then the reports.
    Everything that can be wrong (data, weights, a resume with a changed config, the
    results file's schema) is checked before the first run writes anything."""
    from tqdm import tqdm

    from iwgan.datasets import load_dataset
    from iwgan.fid import frechet_distance, reference_statistics
    from iwgan.records import now

    configs = image_configs(args)
    first = configs[0]
    if first.threads:  # before the classifier and reference features, not only training
        torch.set_num_threads(first.threads)
    results = args.out / "results"
    csv = results / "images.csv"
    done = finished_image_runs(csv) if csv.exists() else set()  # refuses a foreign schema
    if args.resume:
        configs = [c for c in configs if (c.run_id, c.hash()) not in done]
        for cfg in configs:
            ckpt = args.out / "runs" / cfg.run_id / "checkpoint.pt"
            if ckpt.exists():
                load_checkpoint(ckpt, cfg)
    for cfg in configs:
        execution_plan(cfg)
    if not configs:
        print("0 runs: every run is finished with this config in results/images.csv")
        return report(args, results)
    data_kw = dict(data_dir=args.data_dir, download=args.download, crop=first.crop,
                   image_size=first.image_size, cache_dir=args.cache_dir)
    train = load_dataset(first.dataset, "train", max_images=first.max_train, **data_kw)
    validation = load_dataset(first.dataset, "validation",
                              max_images=first.validation_samples, **data_kw)
    extractor = build_extractor(first, train, validation, args)
    reference = reference_statistics(extractor, train, first.fid_samples, args.cache_dir)
    floor_mu, floor_sigma, _ = reference_statistics(extractor, validation, first.fid_samples,
                                                    args.cache_dir)
    real_floor = frechet_distance(floor_mu, floor_sigma, reference[0], reference[1])
    print(f"{extractor.name}: reference {reference[2]['n']} {train.name} train images "
          f"({'cached' if reference[2]['cached'] else 'computed'}); validation vs train "
          f"(real vs real) = {real_floor:.3f}" + (f"; {extractor.note}" if extractor.note
                                                  else ""))
    start = time.perf_counter()
    rows = []
    try:
        for cfg in configs:
            with tqdm(total=cfg.iterations, desc=cfg.run_id, unit="it", dynamic_ncols=True,
                      mininterval=1.0) as bar:
                def on_start(k, bar=bar):
                    bar.n = bar.last_print_n = bar.initial = k
                    bar.refresh()

                row = run_image_experiment(cfg, train, validation, extractor, reference,
                                           args.out, resume=args.resume, progress=bar.update,
                                           real_floor=real_floor, on_start=on_start)
            upsert_image_results(csv, [row])
            rows.append(row)
            fd = row.get("fd")
            tqdm.write(f"{cfg.run_id}: {row['status']}, {row['fd_name']} = "
                       + (f"{fd:.3f}" if isinstance(fd, float) and math.isfinite(fd) else "n/a"))
    except KeyboardInterrupt:
        print("interrupted: finished runs are recorded in results/images.csv; re-run with "
              "--resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    wall = time.perf_counter() - start
    bench = results / "benchmarks" / "images_wall_time.json"
    record = json.loads(bench.read_text()) if bench.exists() else {}
    record[f"{first.dataset}-{first.profile}"] = {
        "runs": len(rows), "wall_seconds": round(wall, 1),
        "methods": sorted({c.method for c in configs}),
        "seeds": sorted({c.seed for c in configs}), "device": first.device, "date": now()}
    if rows:
        write_json(bench, record)
    diverged = [r["run_id"] for r in rows if r["status"] == "diverged"]
    print(f"{len(rows)} runs in {wall:.0f} s; {len(diverged)} diverged"
          + (f": {', '.join(diverged)}" if diverged else ""))
    return report(args, results)


def report(args, results: Path) -> int:
    if not args.no_report:
        from iwgan.reporting.images import build_reports

        for path in build_reports(results, args.out / "reports"):
            print(f"report: {path}")
    return 0
