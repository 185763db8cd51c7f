"""The model contract: ``features(x) -> z``, ``head(z) -> scores``, ``forward = head . features``.

Every robustviz model is a ``RobustModel``: a normalisation layer (inputs stay in
[0, 1]; mean/std live inside the model), a ``body`` that maps images to a flat feature
vector ``z`` of size ``feat_dim``, and a ``head`` that maps ``z`` to class scores
(higher = more likely). Methods that change the decision rule (prototypes, cluster
centres) replace the ``head``; attacks always call ``forward``, so they attack the
real decision rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean/std stored as buffers.

    Args:
        mean, std: one value per channel (or per feature for ``[B, D]`` inputs).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} entries but std has {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape).to(x.dtype)) / self.std.view(shape).to(x.dtype)

    def extra_repr(self) -> str:
        mean = tuple(round(v, 4) for v in self.mean.tolist())
        std = tuple(round(v, 4) for v in self.std.tolist())
        return f"mean={mean}, std={std}"


class RobustModel(nn.Module):
    """A classifier split into ``features`` and ``head``.

    Args:
        body: maps normalised inputs to features ``[B, feat_dim]``.
        feat_dim: size of the feature vector ``body`` returns.
        num_classes: number of classes ``K``.
        mean, std: per-channel statistics for the normalisation layer.
        head: maps features to scores ``[B, K]``; default ``nn.Linear(feat_dim, K)``.
        arch: the architecture name (recorded in checkpoints).

    Shapes:
        ``features(x)``: ``[B, C, H, W]`` in [0, 1] -> ``[B, feat_dim]``.
        ``forward(x)``: ``[B, C, H, W]`` in [0, 1] -> ``[B, K]`` scores.
    """

    def __init__(
        self,
        body: nn.Module,
        feat_dim: int,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        head: nn.Module | None = None,
        arch: str = "custom",
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = body
        self.head = head if head is not None else nn.Linear(feat_dim, num_classes)
        self.feat_dim = feat_dim
        self.num_classes = num_classes
        self.arch = arch
        self.build_args: dict | None = None  # set by models.build; used by checkpoints

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters (where inputs must go)."""
        return next(self.parameters()).device

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The representation the methods act on, flattened to ``[B, feat_dim]``."""
        return self.body(self.normalize(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, K]`` (higher = more likely): ``head(features(x))``."""
        return self.head(self.features(x))


def with_bottleneck(trunk: nn.Module, trunk_dim: int, feat_dim: int | None) -> tuple[nn.Module, int]:
    """Append a linear layer ``trunk_dim -> feat_dim`` to ``trunk`` when ``feat_dim`` is set.

    The architectures' natural features are the (post-ReLU) penultimate activations.
    A requested ``feat_dim`` adds a *linear* embedding layer on top, so the features
    can take any sign (needed for prototypes with negative entries) and can be 2- or
    3-dimensional for direct plots.
    """
    if feat_dim is None or feat_dim == trunk_dim:
        return trunk, trunk_dim
    if feat_dim < 1:
        raise ValueError(f"feat_dim must be >= 1, got {feat_dim}")
    return nn.Sequential(trunk, nn.Flatten(), nn.Linear(trunk_dim, feat_dim)), feat_dim


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` (and every submodule) in eval mode; restore each module's mode after."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training


@torch.no_grad()
def features_of(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``model.features(x)`` in eval mode, batched, as float32 on the CPU, ``[N, feat_dim]``.

    The one batched feature extraction of the package (ClusTR's k-means index, the
    certificate, the plots). The modes of the model's modules are restored afterwards.

    Args:
        model: a model with ``features`` (``RobustModel``, ``WrappedModel``).
        x: inputs ``[N, ...]`` in [0, 1] (any device). batch_size: inputs per forward pass.

    Example:
        >>> from robustviz import models
        >>> features_of(models.build("mlp", 3, 2, feat_dim=2), torch.rand(5, 2)).shape
        torch.Size([5, 2])
    """
    device = next(model.parameters()).device
    with eval_mode(model):
        parts = [model.features(x[i : i + batch_size].to(device)).float().cpu()
                 for i in range(0, x.shape[0], batch_size)]
    return torch.cat(parts) if parts else torch.empty(0, 0)
