"""Datasets as in-memory tensors in [0, 1] with the metadata models and attacks need.

Example:
    >>> from robustviz import data
    >>> bundle = data.load("mnist-mini")
    >>> bundle
    DataBundle('mnist-mini': train=8000, test=2000, classes=10, input_shape=(1, 28, 28), eps=0.3)
"""

from __future__ import annotations

from pathlib import Path

from .._checks import unknown_name_error
from .bundle import DataBundle, Split, channel_stats, stratified_indices
from .embedded import build_mnist_mini, load_mnist_mini
from .loader import BatchIterator, crop_flip, crop_flip_draws, random_crop_flip
from .sources import TORCHVISION_SETS, load_folder, load_torchvision, load_toy

NAMES = ("mnist-mini", *TORCHVISION_SETS, "moons", "blobs", "folder:<path>")

__all__ = [
    "family_of",
    "BatchIterator", "DataBundle", "Split", "NAMES", "build_mnist_mini", "channel_stats",
    "crop_flip", "crop_flip_draws", "default_root", "load", "random_crop_flip", "stratified_indices",
]


def default_root() -> Path:
    """The repository's ``data/`` folder (where ``mnist-mini.npz`` ships)."""
    return Path(__file__).resolve().parents[2] / "data"


def family_of(name: str) -> str:
    """The dataset family recipes pick their settings by, from the dataset's name alone.

    ``"mnist"`` (mnist-mini, MNIST, Fashion-MNIST), ``"cifar"`` (CIFAR-10/100, SVHN and
    ``folder:`` image sets) or ``"toy"`` (moons, blobs).

    Example:
        >>> family_of("cifar10"), family_of("blobs")
        ('cifar', 'toy')
    """
    if name == "mnist-mini":
        return "mnist"
    if name in TORCHVISION_SETS:
        return TORCHVISION_SETS[name][1]
    if name in ("moons", "blobs"):
        return "toy"
    if name.startswith("folder:"):
        return "cifar"
    raise unknown_name_error("dataset", name, NAMES)


def load(
    name: str,
    root: str | Path | None = "data",
    download: bool = False,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
) -> DataBundle:
    """Load a dataset by name.

    Args:
        name: ``"mnist-mini"`` (embedded, offline), ``"mnist"``, ``"fashion-mnist"``,
            ``"cifar10"``, ``"cifar100"``, ``"svhn"`` (torchvision, under ``root``),
            ``"folder:<path>"`` (ImageFolder tree with ``train/`` and ``test/``),
            ``"moons"`` or ``"blobs"`` (2-D toys).
        root: folder for torchvision files. For ``mnist-mini``, the folder holding
            ``mnist-mini.npz``; if it is not there, the repository's ``data/`` is used.
        download: let torchvision download missing files.
        n_train, n_test: keep stratified, seeded subsets of this size (toys: generate
            this many points).
        seed: seed for the subsets (and the toy generators).

    Returns:
        a ``DataBundle`` with images in [0, 1], CHW, int64 labels.

    Example:
        >>> small = load("mnist-mini", n_train=1000, n_test=200, seed=0)
        >>> len(small.train), len(small.test)
        (1000, 200)
    """
    if name.startswith("folder:"):
        bundle = load_folder(name[len("folder:") :])
    elif name == "mnist-mini":
        bundle = load_mnist_mini(_mnist_mini_root(root))
    elif name in TORCHVISION_SETS:
        bundle = load_torchvision(name, root if root is not None else default_root(), download)
    elif name in ("moons", "blobs"):
        return load_toy(name, n_train, n_test, seed)
    else:
        raise unknown_name_error("dataset", name, NAMES)
    return take_subsets(bundle, n_train, n_test, seed)


def take_subsets(bundle: DataBundle, n_train: int | None, n_test: int | None, seed: int) -> DataBundle:
    """Replace the bundle's splits by stratified seeded subsets where sizes are given."""
    for name, size, split in (("n_train", n_train, bundle.train), ("n_test", n_test, bundle.test)):
        if size is not None and not 1 <= size <= len(split):
            raise ValueError(f"{name}={size}, but {bundle.name} has {len(split)} {name[2:]} samples; pass a number "
                             f"in 1..{len(split)} (or leave it out for all of them)")
    if n_train is not None and n_train != len(bundle.train):
        bundle.train = bundle.train.subset(stratified_indices(bundle.train.y, n_train, seed))
    if n_test is not None and n_test != len(bundle.test):
        bundle.test = bundle.test.subset(stratified_indices(bundle.test.y, n_test, seed))
    bundle.info.update(n_train=len(bundle.train), n_test=len(bundle.test), subset_seed=seed)
    return bundle


def _mnist_mini_root(root: str | Path | None) -> Path:
    if root is not None and (Path(root) / "mnist-mini.npz").exists():
        return Path(root)
    return default_root()
