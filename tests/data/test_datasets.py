"""Image datasets: the digits stand-in, the CelebA loaders on generated fixtures in
torchvision's layout and as a plain folder, the data sampler's state, and every bad
dataset directory as a clear error (CLI exit 2, nothing written)."""

import numpy as np
import pytest
import torch
from PIL import Image

from iwgan.cli import main
from iwgan.data.datasets import BatchSampler, DatasetError, load_dataset

# The fixture: 12 aligned-CelebA-sized (178x218) JPEGs; 8 train, 2 valid, 2 test.
PARTITION = [0] * 8 + [1] * 2 + [2] * 2


def write_images(folder, n, size=(178, 218), fmt="JPEG", suffix=".jpg", start=1):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(start, start + n):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        pixels[:, : size[0] // 2] = (i * 20) % 256  # a left half that tells images apart
        name = f"{i:06d}{suffix}"
        Image.fromarray(pixels).save(folder / name, format=fmt)
        names.append(name)
    return names


@pytest.fixture
def fake_celeba(tmp_path):
    """<root>/celeba/img_align_celeba/*.jpg + list_eval_partition.txt (torchvision)."""
    base = tmp_path / "celeba_root" / "celeba"
    names = write_images(base / "img_align_celeba", len(PARTITION))
    (base / "list_eval_partition.txt").write_text(
        "".join(f"{n} {p}\n" for n, p in zip(names, PARTITION)))
    (base / "list_attr_celeba.txt").write_text("not read\n")
    return tmp_path / "celeba_root"


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "faces"
    write_images(folder, 10, fmt="PNG", suffix=".png")
    return folder


def test_digits_are_28x28_in_the_mnist_layout_with_a_fixed_split():
    train, val = load_dataset("digits", "train"), load_dataset("digits", "validation")
    assert (len(train), len(val)) == (1437, 360)
    assert train.images.shape[1:] == (1, 28, 28) and train.images.dtype == torch.uint8
    assert train.images[:, :, :4].max() == 0 and train.images[:, :, -4:].max() == 0  # padding
    assert train.images.max() > 200 and set(train.labels.tolist()) == set(range(10))
    assert train.digest() == load_dataset("digits", "train").digest() != val.digest()
    x = train.batch(slice(0, 5))
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1


def test_celeba_in_torchvision_layout_follows_the_partition_file(fake_celeba, tmp_path):
    cache = tmp_path / "cache"
    train = load_dataset("celeba", "train", fake_celeba, cache_dir=cache)
    val = load_dataset("celeba", "validation", fake_celeba, cache_dir=cache)
    assert train.images.shape == (8, 3, 64, 64) and val.images.shape == (2, 3, 64, 64)
    assert train.images.dtype == torch.uint8 and "center crop 140" in train.preprocessing
    # The same data straight from the celeba/ folder, and from the decoded-image cache.
    assert torch.equal(load_dataset("celeba", "train", fake_celeba / "celeba",
                                    cache_dir=cache).images, train.images)
    assert len(list((cache / "images").glob("*.npy"))) == 2
    full = load_dataset("celeba", "train", fake_celeba, crop=None, cache_dir=cache)
    assert not torch.equal(full.images, train.images)
    assert len(load_dataset("celeba", "train", fake_celeba, max_images=3,
                            cache_dir=cache)) == 3


def test_a_plain_folder_keeps_the_last_tenth_by_name_for_validation(image_folder, tmp_path):
    train = load_dataset("celeba", "train", image_folder, cache_dir=tmp_path / "c")
    val = load_dataset("celeba", "validation", image_folder, cache_dir=tmp_path / "c")
    assert (len(train), len(val)) == (9, 1) and "plain folder" in val.source


def test_a_plain_folder_of_one_image_says_it_needs_two(tmp_path):
    folder = tmp_path / "one"
    write_images(folder, 1)
    with pytest.raises(DatasetError, match=r"holds 1 image; a plain folder needs at least 2"):
        load_dataset("celeba", "train", folder, cache_dir=tmp_path / "c")


def test_a_file_rewritten_in_place_is_decoded_again_not_served_from_the_cache(image_folder,
                                                                            tmp_path):
    cache = tmp_path / "c"
    load_dataset("celeba", "train", image_folder, cache_dir=cache)
    victim = image_folder / "000003.png"
    size = victim.stat().st_size
    victim.write_bytes(b"\0" * size)          # same name, same size, corrupt
    with pytest.raises(DatasetError, match="corrupt or unreadable image .*000003.png"):
        load_dataset("celeba", "train", image_folder, cache_dir=cache)


def test_the_sampler_resumes_the_same_batches():
    a = BatchSampler(10, 4, seed=3)
    first = [a.next() for _ in range(3)]
    b = BatchSampler(10, 4, seed=99)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(a.next(), b.next()) for _ in range(7))
    assert all(len(set(x.tolist())) == 4 for x in first)
    with pytest.raises(DatasetError, match="not the same training data"):
        BatchSampler(11, 4, seed=0).load_state_dict(a.state_dict())
    with pytest.raises(DatasetError, match="fewer than one batch"):
        BatchSampler(3, 4, seed=0)


def test_missing_partial_empty_and_corrupt_celeba_are_clear_errors(fake_celeba, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="(?s)not a directory.*list_eval_partition"):
        load_dataset("celeba", "train", tmp_path / "nowhere", cache_dir=cache)
    partition = fake_celeba / "celeba" / "list_eval_partition.txt"
    text = partition.read_text()
    partition.unlink()
    with pytest.raises(DatasetError, match="list_eval_partition.txt is missing"):
        load_dataset("celeba", "train", fake_celeba, cache_dir=cache)
    partition.write_text(text)
    (fake_celeba / "celeba" / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(DatasetError, match="1 of the 8 train images .* missing.*000002.jpg"):
        load_dataset("celeba", "train", fake_celeba, cache_dir=cache)
    (fake_celeba / "celeba" / "img_align_celeba" / "000002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="corrupt or unreadable image .*000002.jpg"):
        load_dataset("celeba", "train", fake_celeba, cache_dir=cache)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_dataset("celeba", "train", empty, cache_dir=cache)
    small = tmp_path / "small"
    write_images(small, 3, size=(100, 100))
    with pytest.raises(DatasetError, match="smaller than the 140 px crop"):
        load_dataset("celeba", "train", small, cache_dir=cache)


def test_mnist_missing_offline_says_where_to_put_it(tmp_path):
    with pytest.raises(DatasetError, match="MNIST/raw"):
        load_dataset("mnist", "train", tmp_path, source="torchvision")


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "partial"])
def test_the_cli_refuses_a_bad_data_dir_with_exit_2_and_writes_nothing(case, fake_celeba,
                                                                       tmp_path, capsys):
    data = {"missing": tmp_path / "nowhere", "empty": tmp_path / "empty",
            "corrupt": fake_celeba, "partial": fake_celeba}[case]
    if case == "empty":
        data.mkdir()
    if case == "corrupt":
        (fake_celeba / "celeba" / "img_align_celeba" / "000003.jpg").write_bytes(b"\xff\xd8x")
    if case == "partial":
        (fake_celeba / "celeba" / "list_eval_partition.txt").unlink()
    out = tmp_path / "out"
    rc = main(["images", "--dataset", "celeba", "--profile", "smoke", "--data-dir", str(data),
               "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--methods", "iwgan"])
    assert rc == 2
    err = capsys.readouterr().err
    assert {"missing": "not a directory", "empty": "no images", "corrupt": "000003.jpg",
            "partial": "list_eval_partition.txt is missing"}[case] in err
    assert not out.exists()


def write_mnist(root, n_train=10, n_test=5):
    import struct

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + bytes(n * 28 * 28))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n)
                                                          + bytes(n))
    return raw


def test_a_truncated_mnist_file_is_called_truncated_not_missing(tmp_path):
    raw = write_mnist(tmp_path)
    assert len(load_dataset("mnist", "train", tmp_path, source="torchvision")) == 10
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:3000])
    with pytest.raises(DatasetError, match=r"MNIST under .*MNIST/raw is truncated or corrupt "
                       r".*replace its four files") as err:
        load_dataset("mnist", "train", tmp_path, source="torchvision")
    assert "not found" not in str(err.value)


def test_an_image_too_large_to_decode_safely_is_named_with_the_fix(image_folder, tmp_path,
                                                                    monkeypatch):
    # Pillow refuses an image of more than twice MAX_IMAGE_PIXELS (a 30000x30000 PNG at
    # its default): lowered here, so that a 178x218 image stands for one.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(DatasetError, match=r"000001.png: too large to decode safely .*remove "
                       "it from the folder"):
        load_dataset("celeba", "train", image_folder, cache_dir=tmp_path / "c")
