"""Image experiments (Section 5.2, Appendices F and G): one run end to end, and the command
``python -m iwgan images``. Training is :mod:`iwgan.experiments.image_training`, evaluation
:mod:`iwgan.experiments.image_evaluation`, the data and metric set-up
:mod:`iwgan.experiments.image_setup`.

A run's record is ``runs/<run_id>/`` (config.json, manifest.json, log.jsonl,
checkpoint.pt, samples/); its results are one row of ``results/images.csv`` and the
arrays the figures are drawn from, ``results/images/<run_id>.npz`` (uint8 images and
float32 codes and errors: small enough to commit).
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from iwgan.core.methods import METHOD_NAMES
from iwgan.data.datasets import DATASETS, ImageData, load_dataset
from iwgan.engine.config import PRECISIONS, ImageConfig, make_image_config
from iwgan.engine.distributed import ONE, World, barrier
from iwgan.engine.distributed import setup as setup_world
from iwgan.engine.records import (
    finished_image_runs,
    manifest,
    manifest_columns,
    now,
    upsert_image_results,
)
from iwgan.engine.trainer import execution_plan, read_checkpoint
from iwgan.experiments.common import (
    add_device_argument,
    add_set_argument,
    device_of,
    positive_int,
    seeds_of,
    wall_time_key,
)
from iwgan.experiments.image_evaluation import ImageCurve, evaluate_images
from iwgan.experiments.image_setup import image_setup
from iwgan.experiments.image_training import train_images
from iwgan.files import save_npz, update_json, write_json

# --- one run, end to end ----------------------------------------------------------------

def run_image_experiment(cfg, train: ImageData, validation: ImageData, extractor, reference,
                         out: Path, resume: bool = False, progress=None,
                         real_floor: float | None = None, on_start=None,
                         world: World = ONE, device: str | None = None) -> dict:
    """Train (or resume), evaluate and record one run; returns its results row. A
    diverged run is recorded with its iteration and NaN metrics. Under torchrun this is
    rank 0's part (the others run :func:`train_images` alone): it trains its shard,
    then evaluates and writes everything."""
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
           "lr": cfg.lr, "n_critic": cfg.n_critic, "ema": cfg.ema, "metric": cfg.metric,
           "train_images": len(train), "preprocessing": train.preprocessing,
           "precision_used": plan["precision_used"],
           "channels_last_used": plan["channels_last_used"],
           "processes": world.size, "global_batch": cfg.batch_size,
           "batch_per_process": cfg.batch_size // world.size,
           "config_hash": cfg.hash(), **manifest_columns(record)}
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
    return "cpu" if dataset == "digits" else "smoke"


def add_arguments(p) -> None:
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
                        args.inception_weights)
    train, validation, extractor = setup.train, setup.validation, setup.extractor
    reference, real_floor = setup.reference, setup.real_floor
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
                                           real_floor=real_floor, on_start=on_start,
                                           world=world, device=device)
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
                         max_images=first.max_train, cache_dir=args.cache_dir)
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
