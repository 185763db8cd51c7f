"""Datasets: the embedded split, subsets, other sources, the batch iterator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustviz import data
from robustviz.data import BatchIterator, Split, random_crop_flip, stratified_indices
from robustviz.data.embedded import N_TEST, read_idx, split_mnist_test_set

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist-t10k"


def test_mnist_mini_bundle(mnist_mini):
    b = mnist_mini
    assert (len(b.train), len(b.test)) == (8000, 2000)
    assert b.train.x.shape == (8000, 1, 28, 28) and b.train.x.dtype == torch.float32
    assert b.train.y.dtype == torch.int64
    assert 0.0 <= float(b.train.x.min()) and float(b.train.x.max()) <= 1.0
    assert b.input_shape == (1, 28, 28) and b.eps == 0.3 and b.classes == [str(d) for d in range(10)]
    assert b.mean == (0.1307,) and b.std == (0.3081,)


def test_mnist_mini_split_is_stratified(mnist_mini):
    full = torch.cat([mnist_mini.train.y, mnist_mini.test.y])
    test_counts = torch.bincount(mnist_mini.test.y, minlength=10)
    share = torch.bincount(full, minlength=10).double() * N_TEST / len(full)
    # Largest-remainder rounding: every class gets floor or ceil of its exact share.
    assert ((test_counts - share).abs() < 1).all()
    assert int(test_counts.sum()) == N_TEST


def test_mnist_mini_split_is_deterministic_and_disjoint():
    with np.load(data.default_root() / "mnist-mini.npz") as arrays:
        train_idx, test_idx = arrays["train_source_index"], arrays["test_source_index"]
        assert len(np.intersect1d(train_idx, test_idx)) == 0
        assert sorted(np.concatenate([train_idx, test_idx]).tolist()) == list(range(10000))
    a, b = data.load("mnist-mini"), data.load("mnist-mini")
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)


@pytest.mark.skipif(not SHARED_MNIST.exists(), reason="original MNIST t10k files not beside the repo")
def test_embedded_file_rebuilds_identically_from_the_original(tmp_path):
    built = data.build_mnist_mini(SHARED_MNIST, tmp_path)
    with np.load(built) as new, np.load(data.default_root() / "mnist-mini.npz") as shipped:
        for key in shipped.files:
            assert np.array_equal(new[key], shipped[key]), key


def test_split_function_on_synthetic_idx_like_data():
    labels = np.repeat(np.arange(10), [1000 + 10 * k for k in range(10)]).astype(np.uint8)
    images = np.random.default_rng(0).integers(0, 255, (len(labels), 28, 28), dtype=np.uint8)
    first, second = split_mnist_test_set(images, labels), split_mnist_test_set(images, labels)
    for key in first:
        assert np.array_equal(first[key], second[key])
    assert len(first["test_labels"]) == N_TEST
    assert np.array_equal(images[first["test_source_index"]], first["test_images"])


def test_read_idx_roundtrip(tmp_path):
    import gzip

    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(header + arr.tobytes())
    assert np.array_equal(read_idx(path), arr)


def test_stratified_indices_keep_class_shares_and_are_seeded():
    y = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)
    idx = stratified_indices(y, 100, seed=1)
    assert torch.bincount(y[idx]).tolist() == [50, 30, 20]
    assert torch.equal(idx, stratified_indices(y, 100, seed=1))
    assert not torch.equal(idx, stratified_indices(y, 100, seed=2))
    assert len(set(idx.tolist())) == 100
    with pytest.raises(ValueError):
        stratified_indices(y, 0)


def test_subsets_through_load():
    b = data.load("mnist-mini", n_train=1000, n_test=100, seed=3)
    assert (len(b.train), len(b.test)) == (1000, 100)
    counts = torch.bincount(b.train.y, minlength=10)
    assert counts.min() >= 70 and counts.max() <= 120


def test_unknown_dataset_lists_the_names():
    with pytest.raises(ValueError, match="mnist-mini"):
        data.load("imagenet")


def test_missing_torchvision_files_name_the_download_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.load("mnist", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.load("cifar10", root=tmp_path)


def test_folder_dataset(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, n in (("train", 6), ("test", 2)):
        for cls in ("cat", "dog"):
            folder = tmp_path / part / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    b = data.load(f"folder:{tmp_path}")
    assert b.classes == ["cat", "dog"]
    assert b.train.x.shape == (12, 3, 8, 8) and b.test.x.shape == (4, 3, 8, 8)
    assert len(b.mean) == 3 and all(0 < s for s in b.std)
    with pytest.raises(FileNotFoundError, match="train/"):
        data.load(f"folder:{tmp_path / 'train'}")


@pytest.mark.parametrize("name,classes", [("moons", 2), ("blobs", 3)])
def test_toy_sets(name, classes):
    b = data.load(name, n_train=200, n_test=50, seed=0)
    assert b.train.x.shape == (200, 2) and b.test.x.shape == (50, 2)
    assert b.num_classes == classes and b.family == "toy"
    assert 0 <= float(b.train.x.min()) and float(b.test.x.max()) <= 1


def test_split_rejects_0_255_images():
    with pytest.raises(ValueError, match="divide by 255"):
        Split(torch.full((2, 1, 4, 4), 200.0), torch.zeros(2, dtype=torch.long))


def test_batch_iterator_covers_every_sample_once_and_is_seeded():
    split = Split(torch.rand(103, 1, 4, 4), torch.arange(103) % 10)
    it = BatchIterator(split, batch_size=10, seed=5)
    assert len(it) == 11
    seen = torch.cat([x[:, 0, 0, 0] for x, _ in it.epoch(0)])
    assert torch.equal(seen.sort().values, split.x[:, 0, 0, 0].sort().values)
    first = [y for _, y in it.epoch(0)]
    again = [y for _, y in BatchIterator(split, batch_size=10, seed=5).epoch(0)]
    other = [y for _, y in it.epoch(1)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert len(BatchIterator(split, 10, drop_last=True)) == 10


def test_crop_flip_outputs_are_crops_of_the_padded_input():
    x = torch.rand(6, 2, 5, 5)
    out = random_crop_flip(x, pad=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        crops = [padded[i, :, r : r + 5, c : c + 5] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], crop) or torch.equal(out[i], crop.flip(-1)) for crop in crops)
    flips = random_crop_flip(x, pad=0, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(flips[i], x[i]) or torch.equal(flips[i], x[i].flip(-1)) for i in range(6))
