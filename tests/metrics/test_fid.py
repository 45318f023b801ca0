"""Fréchet distances: the closed form, the FID pipeline on a randomly initialised
Inception (no weights here), the reference-statistics cache, the offline classifier
metric, and the missing-weights errors."""

import urllib.error

import numpy as np
import pytest
import torch

from iwgan.cli import main
from iwgan.data.datasets import ImageData, load_dataset, to_uint8
from iwgan.metrics import fid


def test_equal_covariances_give_the_squared_mean_difference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 6))
    sigma = np.cov(a, rowvar=False)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    assert fid.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(
        float(((mu1 - mu2) ** 2).sum()), abs=1e-6)


def test_a_set_against_itself_is_zero_and_one_dimension_matches_the_formula():
    feats = np.random.default_rng(1).normal(size=(400, 8))
    mu, sigma = fid.statistics(feats)
    assert fid.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-6)
    # 1-d Gaussians: (m1 - m2)^2 + (s1 - s2)^2.
    assert fid.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)


def test_fewer_samples_than_dimensions_stays_finite_and_warns():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 20)), rng.normal(size=(5, 20)) + 1
    d = fid.frechet_distance(*fid.statistics(a), *fid.statistics(b))
    assert np.isfinite(d) and d > 0
    with pytest.warns(UserWarning, match="5 samples for 20 feature dimensions"):
        fid.warn_if_singular(5, 20, "test")


def blobs(n, shift, seed):
    """Smooth RGB test images in [0, 1]: gaussian blobs at random places."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    centres = torch.rand(n, 3, 2, generator=g)
    img = torch.exp(-((xx - centres[..., 0, None, None]) ** 2
                      + (yy - centres[..., 1, None, None]) ** 2) / 0.02)
    return (img * (1 - shift) + shift * 0.5).clamp(0, 1)


def test_the_fid_pipeline_end_to_end_on_a_random_inception_with_a_cached_reference(
        tmp_path, monkeypatch):
    extractor = fid.inception_extractor(dims=64, random_init_seed=0)
    real = ImageData("blobs", "train", to_uint8(blobs(12, 0.0, 0)), "test blobs", "test")
    feats = fid.features_of(extractor, real.batch(slice(None)), batch_size=6)
    assert feats.shape == (12, 64) and feats.std(axis=0).mean() > 1e-3  # not ~0
    with pytest.warns(UserWarning, match="singular"):
        reference = fid.reference_statistics(extractor, real, 100, cache_dir=tmp_path)
    assert reference[2]["cached"] is False and reference[2]["n"] == 12
    same = fid.distance_to_reference(extractor, [real.batch(slice(0, 6)),
                                                 real.batch(slice(6, 12))], 12, reference)
    other = fid.distance_to_reference(extractor, [blobs(12, 0.6, 1)], 12, reference)
    assert same["fd"] == pytest.approx(0, abs=1e-3) and other["fd"] > 10 * abs(same["fd"])
    assert same["fd_name"] == "FD-randomInception"  # never called FID
    # Second call: read from the cache, no feature computed.
    monkeypatch.setattr(fid.FeatureExtractor, "features",
                        lambda *a: pytest.fail("features recomputed"))
    again = fid.reference_statistics(extractor, real, 100, cache_dir=tmp_path)
    assert again[2]["cached"] is True and np.array_equal(again[0], reference[0])
    assert len(list(tmp_path.glob("fid_stats/*.npz"))) == 1


@pytest.mark.slow
def test_a_local_weights_file_is_loaded_and_keys_the_cache(tmp_path):
    inc = __import__("iwgan.data._torchvision", fromlist=["x"]).import_pytorch_fid_inception()
    torch.manual_seed(0)
    state = fid._unloaded_fid_inception_v3(inc).state_dict()
    path = tmp_path / fid.INCEPTION_FILE
    torch.save(state, path)
    extractor = fid.inception_extractor(path, dims=64)
    assert extractor.name == "FID-64d" and extractor.key["weights_sha256"]
    loaded = extractor.model.inception.blocks[0][0].conv.weight
    assert torch.equal(loaded, state["Conv2d_1a_3x3.conv.weight"])


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_a_corrupt_weights_file_is_one_clear_error_naming_it(tmp_path, content):
    path = tmp_path / fid.INCEPTION_FILE
    if content is None:   # a readable file of the wrong network
        torch.save({"conv.weight": torch.zeros(1)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(fid.FIDError, match=rf"{path}: not a readable Inception weights file"):
        fid.inception_extractor(path, dims=64)


def test_missing_inception_weights_offline_name_the_file_and_where_to_put_it(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(fid.FIDError) as err:
        fid.resolve_inception_weights()
    msg = str(err.value)
    assert fid.INCEPTION_FILE in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "--inception-weights" in msg
    with pytest.raises(fid.FIDError, match="no such file"):
        fid.resolve_inception_weights(tmp_path / "nope.pth")


def test_the_cli_refuses_missing_weights_with_exit_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["images", "--dataset", "digits", "--profile", "smoke", "--metric", "fid",
               "--inception-weights", str(tmp_path / "missing.pth"), "--out", str(out),
               "--cache-dir", str(tmp_path / "cache")])
    assert rc == 2 and "missing.pth: no such file" in capsys.readouterr().err
    assert not out.exists()


def test_the_classifier_metric_is_cached_and_named_fd_not_fid(tmp_path):
    train, val = load_dataset("digits", "train"), load_dataset("digits", "validation")
    a = fid.classifier_extractor(train, val, cache_dir=tmp_path, recipe={"steps": 20})
    b = fid.classifier_extractor(train, val, cache_dir=tmp_path, recipe={"steps": 20})
    assert a.name == "FD-digitsCNN" and a.dims == 128 and a.note == b.note
    assert len(list(tmp_path.glob("feature_nets/*.pt"))) == 1
    x = train.batch(slice(0, 8))
    assert np.array_equal(a.features(x), b.features(x))
    with pytest.raises(fid.FIDError, match="needs class labels"):
        fid.classifier_extractor(ImageData("celeba", "train", train.images, "", ""), val,
                                 cache_dir=tmp_path)


def test_the_mnist_classifier_is_fd_mnistcnn_with_its_test_accuracy(tmp_path):
    """MNIST's classifier: its own name, the rate decayed linearly, its accuracy on the
    held-out split it is given (the test set), which keys its features."""
    digits = load_dataset("digits", "train")
    train = ImageData("mnist", "train", digits.images[:1000], "", "", digits.labels[:1000])
    test = ImageData("mnist", "test", digits.images[1000:], "", "", digits.labels[1000:])
    a = fid.classifier_extractor(train, test, cache_dir=tmp_path, recipe={"steps": 60})
    assert a.name == "FD-MNISTCNN" and a.key["recipe"]["schedule"] == "linear"
    assert a.note.startswith("classifier test accuracy ") and "test_accuracy" in a.key
    accuracy = float(a.note.rsplit(" ", 1)[1])
    assert 0.5 < accuracy <= 1 and a.key["test_accuracy"] == pytest.approx(accuracy, abs=1e-3)
    # the decayed rate is another model than the constant one of the same steps
    const = fid.classifier_extractor(train, test, cache_dir=tmp_path,
                                     recipe={"steps": 60, "schedule": "constant"})
    x = train.batch(slice(0, 8))
    assert not np.array_equal(a.features(x), const.features(x))
