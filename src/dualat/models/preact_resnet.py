"""Pre-activation ResNet-18 for 32x32 images (He et al. 2016, "Identity Mappings").

Module names follow the PreActResNet used by RobustBench / Rice et al. (conv1, layerN.i.bn1,
conv1, bn2, conv2, shortcut.0, bn, linear) so public CIFAR checkpoints load into
`Classifier.net` with matching keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._init import init_weights
from .registry import register_model


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3 twice plus identity; a 1x1 projection when shape changes.

    The projection reads the pre-activated input, as in the paper: then every residual
    branch and shortcut start from the same normalised tensor.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet(nn.Module):
    """x: (N, C, H, W) normalised -> (N, num_classes). Three stride-2 stages: 32 -> 4."""

    def __init__(self, blocks: tuple[int, ...], num_classes: int, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        planes, layers = 64, []
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), blocks)):
            strides = [1 if i == 0 else 2] + [1] * (n - 1)
            stage = []
            for s in strides:
                stage.append(PreActBlock(planes, width, s))
                planes = width
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        out = F.relu(self.bn(out))
        # Adaptive pooling equals the original 4x4 average pool at 32x32 and also takes
        # other sizes (tests run at 8x8).
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


@register_model("preact_resnet18", min_image_size=8)
def preact_resnet18(num_classes: int, in_channels: int = 3, image_size: int = 32) -> PreActResNet:
    """PreAct ResNet-18, ~11.2M parameters with 10 classes; made for 32x32 inputs."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels)
