"""``mnist-mini``: the small MNIST dataset embedded in the repository.

It is the official MNIST *test* set (10,000 images) split deterministically and
stratified into 8,000 training and 2,000 test images, stored as compressed uint8
arrays in ``data/mnist-mini.npz`` (about 2 MB). ``build_mnist_mini`` re-creates the
file from the original IDX files; ``load_mnist_mini`` reads it in well under a second.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import torch

from .bundle import DataBundle, Split, stratified_indices

FILENAME = "mnist-mini.npz"
SOURCE_FILES = {
    "images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
N_TEST = 2000
SPLIT_SEED = 0
MNIST_CLASSES = [str(d) for d in range(10)]
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def read_idx(path: str | Path) -> np.ndarray:
    """Read a (gzipped) IDX file as used by MNIST into a numpy array of its own shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(shape)


def md5sum(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def split_mnist_test_set(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Split images ``[N, 28, 28]`` / labels ``[N]`` into stratified train and test arrays.

    The test part takes ``N_TEST`` images chosen by ``stratified_indices`` with
    ``SPLIT_SEED``; the rest is the training part. Both keep the original order and
    record their indices into the source set.
    """
    y = torch.from_numpy(labels.astype(np.int64))
    test_idx = stratified_indices(y, N_TEST, seed=SPLIT_SEED).numpy()
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[test_idx] = False
    train_idx = np.nonzero(train_mask)[0]
    return {
        "train_images": images[train_idx],
        "train_labels": labels[train_idx],
        "train_source_index": train_idx.astype(np.int32),
        "test_images": images[test_idx],
        "test_labels": labels[test_idx],
        "test_source_index": test_idx.astype(np.int32),
    }


def build_mnist_mini(source_dir: str | Path, out_dir: str | Path = "data") -> Path:
    """Build ``data/mnist-mini.npz`` from the MNIST test-set IDX files in ``source_dir``.

    The source files are checked against their published md5 sums first.

    Example:
        >>> build_mnist_mini("../shared/datasets/mnist-t10k")  # doctest: +SKIP
        PosixPath('data/mnist-mini.npz')
    """
    source_dir = Path(source_dir)
    paths = {}
    for key, (filename, expected_md5) in SOURCE_FILES.items():
        path = source_dir / filename
        if not path.exists():
            raise FileNotFoundError(f"{path} not found (expected the MNIST t10k IDX files)")
        if md5sum(path) != expected_md5:
            raise ValueError(f"{path} has md5 {md5sum(path)}, expected {expected_md5}")
        paths[key] = path
    arrays = split_mnist_test_set(read_idx(paths["images"]), read_idx(paths["labels"]))
    out = Path(out_dir) / FILENAME
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return out


def load_mnist_mini(root: str | Path) -> DataBundle:
    """Load the embedded ``mnist-mini`` bundle from ``root/mnist-mini.npz``."""
    path = Path(root) / FILENAME
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found. mnist-mini ships in the repository's data/ folder; "
            "pass root=<path to that folder> if you run from elsewhere."
        )
    with np.load(path) as arrays:
        train = _to_split(arrays["train_images"], arrays["train_labels"])
        test = _to_split(arrays["test_images"], arrays["test_labels"])
    return DataBundle(
        name="mnist-mini",
        train=train,
        test=test,
        classes=list(MNIST_CLASSES),
        mean=MNIST_MEAN,
        std=MNIST_STD,
        input_shape=(1, 28, 28),
        eps=0.3,
        family="mnist",
        info={"source": "MNIST official test set (t10k), stratified 8000/2000 split", "file": str(path)},
    )


def _to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    x = torch.from_numpy(images).unsqueeze(1).float().div_(255.0)
    return Split(x, torch.from_numpy(labels.astype(np.int64)))
