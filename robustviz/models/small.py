"""Small networks for CPU work: ``smallcnn`` (28x28 images) and ``mlp`` (2-D toys)."""

from __future__ import annotations

from torch import nn


def smallcnn_trunk(in_channels: int) -> tuple[nn.Module, int]:
    """The 4-conv + 2-FC network used for MNIST by TRADES and ADR (no dropout).

    conv3x3(32)-conv3x3(32)-maxpool-conv3x3(64)-conv3x3(64)-maxpool, then FC 1024->200,
    FC 200->200, each followed by ReLU. On 28x28 inputs the conv output is 64x4x4; other
    sizes are average-pooled to 4x4 so the same network runs on 32x32 images.

    Returns:
        the trunk (images ``[B, C, H, W]`` -> ``[B, 200]``) and its output size, 200.
    """
    trunk = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3), nn.ReLU(),
        nn.Conv2d(32, 32, 3), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(),
        nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 200), nn.ReLU(),
        nn.Linear(200, 200), nn.ReLU(),
    )
    return trunk, 200


def mlp_trunk(in_features: int, hidden: int = 64, depth: int = 2) -> tuple[nn.Module, int]:
    """``depth`` fully connected layers of width ``hidden`` with ReLU, for ``[B, D]`` inputs.

    Returns:
        the trunk (``[B, D]`` -> ``[B, hidden]``) and its output size.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*layers), hidden


def lenet5_trunk(in_channels: int) -> tuple[nn.Module, int]:
    """LeNet-5 as in the official GCE code: conv5x5(6, pad 2)-pool-conv5x5(16)-pool, FC 400-120-84.

    Returns the trunk (images -> ``[B, 84]`` after ReLU) and 84. Inputs other than 28x28 are
    average-pooled to 5x5 after the convolutions.
    """
    trunk = nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(5), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
    )
    return trunk, 84


def lenet_plus_trunk(in_channels: int) -> tuple[nn.Module, int]:
    """"LeNet+" of the SAT-Rx MNIST code: conv5x5(32, pad 2)-pool-conv5x5(64, pad 2)-pool, FC 1024.

    No BatchNorm, no dropout. On 28x28 inputs the conv output is 64x7x7, so the FC layer takes
    3,136 inputs, as in the authors' ``LeNet_Plus``; other sizes are average-pooled to 7x7.

    Returns the trunk (images -> ``[B, 1024]`` after ReLU) and 1024.
    """
    trunk = nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(7), nn.Flatten(),
        nn.Linear(64 * 7 * 7, 1024), nn.ReLU(),
    )
    return trunk, 1024
