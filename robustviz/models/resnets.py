"""CIFAR-style residual networks: ResNet-18, PreAct ResNet-18 and WideResNets.

``wrn28_10_satrx`` is the WideResNet of the SAT-Rx authors' code, kept apart because its
block differs from the usual pre-activation block (see ``WideBasic``).

All take ``in_channels`` (1 or 3), use a 3x3 stem without max-pooling (the CIFAR
variant) and end in global average pooling, so they run on 28x28 and 32x32 inputs.
Their trunks return the pooled, post-activation features of the last stage.
"""

from __future__ import annotations

import math

from torch import nn


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3x3 convs with BN, identity shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016, "Identity mappings").

    Also the block of WideResNets (Zagoruyko & Komodakis 2016), used here without dropout.
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + shortcut


def _stage(block, in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [block(in_planes, planes, stride)]
    layers += [block(planes, planes, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def resnet18_trunk(in_channels: int) -> tuple[nn.Module, int]:
    """CIFAR ResNet-18 (kuangliu layout): stem 3x3/64, stages 64-128-256-512, strides 1-2-2-2.

    Returns the trunk (images -> pooled ``[B, 512]`` after the final ReLU) and 512.
    """
    trunk = nn.Sequential(
        nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        _stage(BasicBlock, 64, 64, 2, 1),
        _stage(BasicBlock, 64, 128, 2, 2),
        _stage(BasicBlock, 128, 256, 2, 2),
        _stage(BasicBlock, 256, 512, 2, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return trunk, 512


def preact_resnet18_trunk(in_channels: int) -> tuple[nn.Module, int]:
    """PreAct ResNet-18 as used by Wong et al. and Rice et al.; final BN+ReLU before pooling."""
    trunk = nn.Sequential(
        nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False),
        _stage(PreActBlock, 64, 64, 2, 1),
        _stage(PreActBlock, 64, 128, 2, 2),
        _stage(PreActBlock, 128, 256, 2, 2),
        _stage(PreActBlock, 256, 512, 2, 2),
        nn.BatchNorm2d(512), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return trunk, 512


def wide_resnet_trunk(in_channels: int, depth: int, widen: int) -> tuple[nn.Module, int]:
    """WideResNet-``depth``-``widen`` (e.g. 28-10, 34-10): widths 16, 16k, 32k, 64k.

    ``(depth - 4)`` must be divisible by 6; each of the 3 stages has ``(depth-4)/6`` blocks.
    Returns the trunk (images -> pooled ``[B, 64*widen]``) and ``64 * widen``.
    """
    return _wide_trunk(in_channels, depth, widen, PreActBlock, stem_bias=False, bn_momentum=0.1)


def _wide_trunk(in_channels: int, depth: int, widen: int, block, stem_bias: bool,
                bn_momentum: float) -> tuple[nn.Module, int]:
    """Stem conv3x3(16), three stages of ``(depth - 4) / 6`` ``block``s of widths 16k, 32k, 64k,
    BatchNorm, ReLU and average pooling; returns the trunk and its width ``64 * widen``."""
    if (depth - 4) % 6:
        raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
    n = (depth - 4) // 6
    widths = [16, 16 * widen, 32 * widen, 64 * widen]
    trunk = nn.Sequential(
        nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=stem_bias),
        _stage(block, widths[0], widths[1], n, 1),
        _stage(block, widths[1], widths[2], n, 2),
        _stage(block, widths[2], widths[3], n, 2),
        nn.BatchNorm2d(widths[3], momentum=bn_momentum), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return trunk, widths[3]


class WideBasic(nn.Module):
    """The wide block of the SAT-Rx code (after Zagoruyko & Komodakis' PyTorch ports).

    ``conv3x3(relu(bn(conv3x3(relu(bn(x)))))) + shortcut(x)`` where, unlike ``PreActBlock``,
    the stride sits on the *second* convolution, every convolution has a bias, and the 1x1
    shortcut convolution (when the shape changes) is applied to the block's raw input.
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, 1, 1, bias=True)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=True)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=True)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return out + (self.shortcut(x) if self.shortcut is not None else x)


def satrx_wide_resnet_trunk(in_channels: int, depth: int = 28, widen: int = 10) -> tuple[nn.Module, int]:
    """The SAT-Rx authors' WideResNet-``depth``-``widen`` (``tools/networks/wideresnet.py``).

    Stem conv3x3(16) with bias, three stages of ``WideBasic`` blocks (dropout 0), a final
    BatchNorm with PyTorch momentum 0.9 (as in the code: its running statistics follow mostly
    the latest batch), ReLU and average pooling. Convolutions get Xavier-uniform weights with
    gain sqrt(2) and zero biases; BatchNorm weights 1 and biases 0.

    Returns the trunk (images -> pooled ``[B, 64*widen]``) and ``64 * widen``.
    """
    trunk, width = _wide_trunk(in_channels, depth, widen, WideBasic, stem_bias=True, bn_momentum=0.9)
    for module in trunk.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.xavier_uniform_(module.weight, gain=math.sqrt(2))
            nn.init.zeros_(module.bias)
    return trunk, width
