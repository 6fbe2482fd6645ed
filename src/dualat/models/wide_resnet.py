"""Pre-activation WideResNet (Zagoruyko & Komodakis 2016) as used for Madry/TRADES training.

Module names follow the TRADES / RobustBench WideResNet (conv1, blockN.layer.i.bn1, conv1,
bn2, conv2, convShortcut, bn1, fc) so public checkpoints load into `Classifier.net`.
WRN-34-10 has ~46.2M parameters, WRN-28-10 ~36.5M (10 classes).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DualatError
from ._init import init_weights
from .registry import register_model


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3, (dropout), BN-ReLU-conv3x3, plus identity or 1x1 projection."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_planes == planes and stride == 1
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(
            in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        # Identity blocks add the raw input; projection blocks project the pre-activation.
        skip = x if self.convShortcut is None else self.convShortcut(pre)
        out = self.relu2(self.bn2(self.conv1(pre)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return skip + self.conv2(out)


class _Group(nn.Module):
    """A stage of blocks; the `.layer` indirection exists only to match checkpoint keys."""

    def __init__(self, n: int, in_planes: int, planes: int, stride: int, dropout: float):
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1, dropout)
            for i in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-widen: x (N, C, H, W) normalised -> (N, num_classes); two stride-2 stages.

    depth = 6n + 4 (n blocks per stage); widths 16, 16w, 32w, 64w.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, depth: int = 28, widen: int = 10,
                 dropout: float = 0.0):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise DualatError(f"WideResNet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 34, "
                              f"...), got {depth!r}")
        if isinstance(widen, bool) or not isinstance(widen, int) or widen < 1:
            raise DualatError(f"WideResNet widen must be an integer >= 1, got {widen!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise DualatError(f"WideResNet dropout must be in [0, 1), got {dropout!r}")
        n = (depth - 4) // 6
        w = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(in_channels, w[0], 3, 1, 1, bias=False)
        self.block1 = _Group(n, w[0], w[1], 1, float(dropout))
        self.block2 = _Group(n, w[1], w[2], 2, float(dropout))
        self.block3 = _Group(n, w[2], w[3], 2, float(dropout))
        self.bn1 = nn.BatchNorm2d(w[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(w[3], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        # Adaptive pooling equals the usual 8x8 average pool at 32x32 and takes other sizes.
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model("wide_resnet", min_image_size=8)
def wide_resnet(num_classes: int, in_channels: int = 3, image_size: int = 32, depth: int = 28,
                widen: int = 10, dropout: float = 0.0) -> WideResNet:
    """Any WRN-depth-widen; the presets below fix depth and widen."""
    return WideResNet(num_classes, in_channels, depth, widen, dropout)


@register_model("wrn28_10", min_image_size=8)
def wrn28_10(num_classes: int, in_channels: int = 3, image_size: int = 32,
             dropout: float = 0.0) -> WideResNet:
    """WRN-28-10, ~36.5M parameters."""
    return WideResNet(num_classes, in_channels, 28, 10, dropout)


@register_model("wrn34_10", min_image_size=8)
def wrn34_10(num_classes: int, in_channels: int = 3, image_size: int = 32,
             dropout: float = 0.0) -> WideResNet:
    """WRN-34-10 (Madry / TRADES), ~46.2M parameters."""
    return WideResNet(num_classes, in_channels, 34, 10, dropout)


@register_model("wrn16_4", min_image_size=8)
def wrn16_4(num_classes: int, in_channels: int = 3, image_size: int = 32,
            dropout: float = 0.0) -> WideResNet:
    """WRN-16-4, ~2.7M parameters: small enough for tests and quick CPU runs."""
    return WideResNet(num_classes, in_channels, 16, 4, dropout)
