"""What every image run of one dataset shares: its data, the feature network of its
metric, the reference statistics and the real-vs-real floor."""

from __future__ import annotations

from dataclasses import dataclass

from iwgan.data.datasets import TEST_SPLITS, ImageData, load_dataset
from iwgan.metrics.fid import (
    classifier_extractor,
    frechet_distance,
    inception_extractor,
    reference_statistics,
)


@dataclass
class ImageSetup:
    """What every run of one dataset shares: its data, the feature network of its
    metric, the reference statistics (of ``reference_data``'s images) and the
    real-vs-real floor."""

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
