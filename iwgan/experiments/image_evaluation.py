"""Evaluating an image run (Section 5.2, Appendices F and G): G and Q in evaluation
batches, the evaluation curve with its plateau verdict, and the final metric with the
arrays every figure is drawn from."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from iwgan.core.losses import mmd_imq, reconstruction_error
from iwgan.core.methods import Models, get_method
from iwgan.data.datasets import ImageData, to_uint8
from iwgan.engine.seeds import derived_generator
from iwgan.engine.trainer import autocast
from iwgan.experiments.skeleton import Curve
from iwgan.metrics.fid import distance_to_reference
from iwgan.metrics.plateau import curve_every, image_limits


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


def encode_images(cfg, models: Models, images: torch.Tensor, plan: dict) -> torch.Tensor:
    """Q(x) of uint8 images, scaled to [0, 1] on the device, in eval batches."""
    encode = get_method(cfg.method).encode
    return in_eval_batches(cfg, models, images,
                           lambda m, x: encode(m, x.float().div_(255)), plan)




CURVE_SAMPLES = 1_000        # generated images per curve point
CURVE_RECONSTRUCTIONS = 200  # validation images reconstructed per curve point


class ImageCurve(Curve):
    """An image run's evaluation curve: the run's Fréchet distance on ``CURVE_SAMPLES``
    generated images against the reference, and the mean reconstruction error on the
    first ``CURVE_RECONSTRUCTIONS`` validation images, from generators of the run's own,
    ``cfg.curve_points`` times. Only for the cheap feature networks (FD-<data>CNN) or on
    a GPU: Inception features cost ~0.17 s per image on a CPU. Its plateau rule: each may
    move by 10 % of its level (FD also by the real-vs-real floor) over the last quarter."""

    def __init__(self, cfg, validation: ImageData, extractor, reference, plan: dict,
                 real_floor: float | None = None):
        super().__init__(cfg, curve_every(cfg.iterations, cfg.curve_points))
        self.extractor, self.reference, self.plan = extractor, reference, plan
        self.real_floor = real_floor
        self.encoder = get_method(cfg.method).has_encoder
        self.n = min(cfg.fid_samples, CURVE_SAMPLES)
        self.z = torch.randn(self.n, cfg.z_dim, generator=derived_generator(cfg.seed, "curve"))
        self.x = validation.images[:CURVE_RECONSTRUCTIONS]

    @staticmethod
    def wanted(cfg) -> bool:
        return cfg.metric == "fd-cnn" or torch.device(cfg.device).type == "cuda"

    def measure(self, it: int, models) -> dict:
        with warnings.catch_warnings():   # 1,000 samples for 128 features: biased, known
            warnings.simplefilter("ignore")
            fd = distance_to_reference(self.extractor,
                                       [generate_images(self.cfg, models, self.z, self.plan)],
                                       self.n, self.reference)["fd"]
        recon = float("nan")
        if self.encoder:
            codes = encode_images(self.cfg, models, self.x, self.plan)
            rebuilt = generate_images(self.cfg, models, codes, self.plan)
            recon = float(reconstruction_error(self.x.float() / 255, rebuilt).mean())
        return {"fd": fd, "recon_error": recon}

    def limits(self) -> dict:
        return image_limits(self.encoder, self.real_floor)


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
    if method.has_encoder:
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
