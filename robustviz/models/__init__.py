"""Model zoo. Every model follows the contract in ``RobustModel``.

Example:
    >>> from robustviz import models
    >>> net = models.build("smallcnn", num_classes=10, in_channels=1, feat_dim=2)
    >>> net.features(torch.rand(4, 1, 28, 28)).shape
    torch.Size([4, 2])

Your own model (any ``nn.Module``) gets the same contract with ``wrap``:

    >>> from torchvision.models import resnet18
    >>> mine = wrap(resnet18(weights=None, num_classes=10), features="avgpool")
    >>> mine.features(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 512])
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch

from .._checks import unknown_name_error
from .base import Normalize, RobustModel, eval_mode, features_of, with_bottleneck
from .resnets import preact_resnet18_trunk, resnet18_trunk, satrx_wide_resnet_trunk, wide_resnet_trunk
from .small import lenet5_trunk, lenet_plus_trunk, mlp_trunk, smallcnn_trunk
from .wrap import WrappedModel, wrap

__all__ = [
    "ARCHITECTURES", "Normalize", "RobustModel", "WrappedModel", "build", "eval_mode", "features_of", "wrap",
]

# name -> (function(in_channels) -> (trunk, trunk_dim), one-line description)
ARCHITECTURES = {
    "mlp": (mlp_trunk, "2 hidden layers of 64 units, for the 2-D toy sets (in_channels = input size)"),
    "smallcnn": (smallcnn_trunk, "4 conv + 2 FC (TRADES/ADR MNIST CNN), 200-d features, CPU-friendly"),
    "lenet5": (lenet5_trunk, "LeNet-5 (GCE's MNIST network), 84-d features"),
    "lenet_plus": (lenet_plus_trunk, "LeNet+ (SAT-Rx MNIST network, no BatchNorm), 1024-d features"),
    "resnet18": (resnet18_trunk, "CIFAR ResNet-18, 512-d features"),
    "preact_resnet18": (preact_resnet18_trunk, "PreAct ResNet-18 (Wong et al., Rice et al.), 512-d"),
    "wrn28_10": (partial(wide_resnet_trunk, depth=28, widen=10), "WideResNet-28-10, 640-d"),
    "wrn34_10": (partial(wide_resnet_trunk, depth=34, widen=10), "WideResNet-34-10, 640-d"),
    "wrn28_10_satrx": (partial(satrx_wide_resnet_trunk, depth=28, widen=10),
                       "WideResNet-28-10 as in the SAT-Rx code (conv biases, Xavier init), 640-d"),
}


def build(
    name: str,
    num_classes: int,
    in_channels: int,
    feat_dim: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int | None = None,
) -> RobustModel:
    """Build an architecture with the robustviz contract.

    Args:
        name: one of ``ARCHITECTURES``.
        num_classes: number of classes ``K`` (>= 2).
        in_channels: image channels (1 or 3); for ``mlp`` the input size (2 for the toys).
        feat_dim: size of ``features(x)``. ``None`` keeps the architecture's natural
            penultimate features; any other value adds a linear embedding layer.
        mean, std: normalisation statistics (default 0.5 / 0.5 per channel, i.e. [-1, 1]).
        seed: if given, parameters are initialised from this seed.

    Returns:
        a ``RobustModel`` on the CPU.
    """
    if name not in ARCHITECTURES:
        raise unknown_name_error("model", name, tuple(ARCHITECTURES))
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    mean = tuple(mean) if mean is not None else (0.5,) * in_channels
    std = tuple(std) if std is not None else (0.5,) * in_channels
    if len(mean) != in_channels:
        raise ValueError(f"mean has {len(mean)} entries but in_channels={in_channels}")
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        trunk, trunk_dim = ARCHITECTURES[name][0](in_channels)
        body, dim = with_bottleneck(trunk, trunk_dim, feat_dim)
        model = RobustModel(body, dim, num_classes, mean, std, arch=name)
    # Everything needed to rebuild the same architecture from a checkpoint.
    model.build_args = dict(name=name, num_classes=num_classes, in_channels=in_channels,
                            feat_dim=feat_dim, mean=list(mean), std=list(std))
    return model
