"""Dataset sources other than the embedded one: torchvision sets, image folders, 2-D toys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .bundle import DataBundle, Split, channel_stats
from .embedded import MNIST_CLASSES, MNIST_MEAN, MNIST_STD

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot",
]

# name -> (torchvision class name, family, mean, std, eps, classes or None = read from the set)
TORCHVISION_SETS = {
    "mnist": ("MNIST", "mnist", MNIST_MEAN, MNIST_STD, 0.3, MNIST_CLASSES),
    "fashion-mnist": ("FashionMNIST", "mnist", (0.2860,), (0.3530,), 0.1, FASHION_CLASSES),
    "cifar10": ("CIFAR10", "cifar", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 8 / 255,
                CIFAR10_CLASSES),
    "cifar100": ("CIFAR100", "cifar", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 8 / 255,
                 None),
    "svhn": ("SVHN", "cifar", (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 8 / 255,
             [str(d) for d in range(10)]),
}


def load_torchvision(name: str, root: str | Path, download: bool) -> DataBundle:
    """Load one of ``TORCHVISION_SETS`` under ``root`` into memory.

    Raises ``FileNotFoundError`` naming the ``download`` flag when files are missing.
    """
    import torchvision.datasets as tvd

    cls_name, family, mean, std, eps, classes = TORCHVISION_SETS[name]
    dataset_cls = getattr(tvd, cls_name)
    root = str(root)
    try:
        if name == "svhn":
            raw_train = dataset_cls(root, split="train", download=download)
            raw_test = dataset_cls(root, split="test", download=download)
        else:
            raw_train = dataset_cls(root, train=True, download=download)
            raw_test = dataset_cls(root, train=False, download=download)
    except RuntimeError as err:
        if download:
            raise
        raise FileNotFoundError(
            f"{name} was not found under {root!r}. Pass download=True "
            f"(command line: --download) to fetch it with torchvision. ({err})"
        ) from err
    train, test = _torchvision_split(raw_train), _torchvision_split(raw_test)
    if classes is None:
        classes = list(raw_train.classes)
    return DataBundle(
        name=name, train=train, test=test, classes=list(classes), mean=mean, std=std,
        input_shape=tuple(train.x.shape[1:]), eps=eps, family=family,
        info={"source": f"torchvision.datasets.{cls_name}", "root": root},
    )


def _torchvision_split(dataset) -> Split:
    data = dataset.data
    data = torch.as_tensor(np.asarray(data))
    if data.dim() == 3:  # MNIST-like: [N, H, W]
        data = data.unsqueeze(1)
    elif data.shape[-1] == 3:  # CIFAR: [N, H, W, C]
        data = data.permute(0, 3, 1, 2)
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = dataset.labels  # SVHN
    return Split(data.contiguous().float().div_(255.0), torch.as_tensor(np.asarray(labels)).long())


def load_folder(path: str | Path) -> DataBundle:
    """Load an ImageFolder tree ``path/{train,test}/<class>/*`` fully into memory.

    Images are read with PIL. If every image is grayscale they stay one-channel; otherwise
    every image is converted to RGB (grayscale ones by repeating their channel), so a folder
    of mixed grayscale and colour images loads as RGB. All images must have the same size.
    A file PIL cannot read (truncated, corrupt, not an image) is skipped with a warning that
    counts and names the skipped files. Mean/std are measured on ``train``. Meant for small
    datasets such as the CIFAR-10 JPEG archive.
    """
    from torchvision.datasets import ImageFolder

    root = Path(path)
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise FileNotFoundError(f"folder dataset {root} needs a {part}/ subfolder")
    train_set, test_set = ImageFolder(str(root / "train")), ImageFolder(str(root / "test"))
    if train_set.classes != test_set.classes:
        raise ValueError(f"train/ and test/ of {root} have different class folders")
    train, test = _read_image_folder(train_set), _read_image_folder(test_set)
    if train.x.shape[1] != test.x.shape[1]:  # one split all grayscale, the other with colour
        train, test = _as_rgb(train), _as_rgb(test)
    mean, std = channel_stats(train.x)
    return DataBundle(
        name=f"folder:{root}", train=train, test=test, classes=list(train_set.classes),
        mean=mean, std=std, input_shape=tuple(train.x.shape[1:]), eps=8 / 255, family="cifar",
        info={"source": f"ImageFolder at {root}"},
    )


GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _read_image_folder(dataset) -> Split:
    """Every readable image of an ``ImageFolder`` as a ``Split`` (grayscale only if all are)."""
    from PIL import Image, UnidentifiedImageError
    from tqdm.auto import tqdm

    arrays, labels, skipped = [], [], []
    for file, label in tqdm(dataset.samples, desc=f"reading {Path(dataset.root).name}", leave=False):
        try:
            with Image.open(file) as img:
                arrays.append(np.asarray(img.convert("L" if img.mode in GRAYSCALE_MODES else "RGB")))
        except (UnidentifiedImageError, OSError, SyntaxError) as err:  # PIL's errors for unreadable files
            skipped.append((file, err))
            continue
        labels.append(label)
    if skipped:
        _warn_skipped(dataset.root, skipped, len(dataset.samples))
    if any(a.ndim == 3 for a in arrays):
        arrays = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
    sizes = {a.shape for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"images in {dataset.root} differ in size: {sorted(sizes)[:4]}; resize them to one size")
    x = torch.from_numpy(np.stack(arrays))
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    return Split(x.contiguous().float().div_(255.0), torch.tensor(labels, dtype=torch.int64))


def _warn_skipped(root, skipped: list, total: int) -> None:
    """Warn about unreadable image files (or raise when none of ``total`` could be read)."""
    import warnings

    names = ", ".join(str(file) for file, _ in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    if len(skipped) == total:
        raise ValueError(f"none of the {total} image files in {root} could be read (e.g. {names}: {skipped[0][1]})")
    warnings.warn(f"skipped {len(skipped)} of {total} image files in {root} that PIL cannot read ({names}); "
                  "delete or replace them to silence this warning", UserWarning, stacklevel=3)


def _as_rgb(split: Split) -> Split:
    """``split`` with one-channel images repeated into three channels."""
    return split if split.x.shape[1] == 3 else Split(split.x.repeat(1, 3, 1, 1), split.y)


def load_toy(name: str, n_train: int | None, n_test: int | None, seed: int) -> DataBundle:
    """Two-dimensional toy problems from scikit-learn, rescaled into [0, 1]^2.

    ``moons``: two interleaving half circles (noise 0.1). ``blobs``: three Gaussian blobs.
    The min-max rescaling uses the training points, so the [0, 1] contract holds for
    attacks (clipped to [0, 1]); the default eps is 0.05 in these units.
    """
    from sklearn.datasets import make_blobs, make_moons

    for label, size in (("n_train", n_train), ("n_test", n_test)):
        if size is not None and size < 2:
            raise ValueError(f"{label}={size}: the toy sets need at least 2 points per split")
    n_train, n_test = n_train or 1000, n_test or 500
    total = n_train + n_test
    if name == "moons":
        points, labels = make_moons(n_samples=total, noise=0.1, random_state=seed)
        classes = ["upper moon", "lower moon"]
    else:
        points, labels = make_blobs(n_samples=total, centers=3, cluster_std=1.0, random_state=seed)
        classes = ["blob 0", "blob 1", "blob 2"]
    lo, hi = points[:n_train].min(0), points[:n_train].max(0)
    margin = 0.05 * (hi - lo)
    scaled = np.clip((points - lo + margin) / (hi - lo + 2 * margin), 0.0, 1.0)
    x = torch.tensor(scaled, dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.int64)
    train, test = Split(x[:n_train], y[:n_train]), Split(x[n_train:], y[n_train:])
    mean, std = channel_stats(train.x)
    return DataBundle(
        name=name, train=train, test=test, classes=classes, mean=mean, std=std,
        input_shape=(2,), eps=0.05, family="toy",
        info={"source": f"sklearn.datasets.make_{name}", "seed": seed},
    )
