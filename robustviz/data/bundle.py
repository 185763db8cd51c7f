"""The in-memory dataset containers every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._checks import check_images


@dataclass
class Split:
    """One split of a dataset, held in memory.

    Attributes:
        x: float32 images ``[N, C, H, W]`` in [0, 1] (or ``[N, D]`` features in [0, 1]
            for the 2-D toy sets).
        y: int64 labels ``[N]``.

    A ``Split`` is also a ``torch.utils.data.Dataset`` (``len`` and indexing work).
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} samples but y has {self.y.shape[0]}")
        if self.y.dtype != torch.int64:
            self.y = self.y.long()
        check_images(self.x, "images")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, index):
        return self.x[index], self.y[index]

    def subset(self, indices: torch.Tensor) -> Split:
        """Return the samples at ``indices`` as a new ``Split``."""
        return Split(self.x[indices], self.y[indices])


@dataclass
class DataBundle:
    """A dataset ready for robustviz: splits plus what models and attacks need to know.

    Attributes:
        name: the key it was loaded with, e.g. ``"mnist-mini"``.
        train, test: the splits (images in [0, 1], CHW).
        classes: class names, ``classes[k]`` is the name of label ``k``.
        mean, std: per-channel statistics of the training images; models use them in
            their normalisation layer (inputs stay in [0, 1]).
        input_shape: shape of one input, e.g. ``(1, 28, 28)``.
        eps: the conventional L-inf budget for this dataset in [0, 1] units
            (MNIST 0.3, CIFAR 8/255).
        family: ``"mnist"``, ``"cifar"`` or ``"toy"``; recipes pick their defaults by it.
        info: free-form provenance (source files, subset seeds, ...).
    """

    name: str
    train: Split
    test: Split
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_shape: tuple[int, ...]
    eps: float
    family: str
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.input_shape[0])

    def __repr__(self) -> str:
        return (
            f"DataBundle({self.name!r}: train={len(self.train)}, test={len(self.test)}, "
            f"classes={self.num_classes}, input_shape={self.input_shape}, eps={self.eps:.4g})"
        )


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of images ``[N, C, H, W]`` (or features ``[N, D]``)."""
    dims = [0] + list(range(2, x.dim()))
    mean = x.double().mean(dim=dims)
    std = x.double().std(dim=dims).clamp_min(1e-6)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def stratified_indices(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Pick ``n`` indices of ``y`` so every class keeps its share (largest-remainder rounding).

    Deterministic for a given ``seed``; the returned indices are sorted.

    Example:
        >>> y = torch.tensor([0] * 80 + [1] * 20)
        >>> idx = stratified_indices(y, 10, seed=0)
        >>> torch.bincount(y[idx]).tolist()
        [8, 2]
    """
    total = int(y.numel())
    if not 0 < n <= total:
        raise ValueError(f"subset size must be in 1..{total}, got {n}")
    counts = quotas_per_class(y, n)
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for cls, quota in counts.items():
        members = torch.nonzero(y == cls).flatten()
        perm = torch.randperm(members.numel(), generator=gen)
        chosen.append(members[perm[:quota]])
    return torch.sort(torch.cat(chosen)).values


def quotas_per_class(y: torch.Tensor, n: int) -> dict[int, int]:
    """How many samples of each class a stratified subset of size ``n`` takes."""
    classes, counts = torch.unique(y, return_counts=True)
    exact = counts.double() * n / y.numel()
    quota = exact.floor().long()
    remainder = exact - quota
    # Hand the leftover slots to the classes with the largest remainders (ties: lower label).
    order = sorted(range(len(classes)), key=lambda i: (-float(remainder[i]), int(classes[i])))
    for i in order[: n - int(quota.sum())]:
        quota[i] += 1
    return {int(c): int(q) for c, q in zip(classes, quota)}
