"""Bottleneck ResNet-50 and Wide-ResNet-50-4 for ImageNet-sized inputs (224/256).

Parameter and buffer names match torchvision's `resnet50` (conv1, bn1, layer1.0.conv1, ...,
layerN.0.downsample.0/1, fc), so public state dicts -- torchvision, RobustBench, MadryLab
`robustness` ImageNet L2/Linf ResNet-50s after stripping their prefix -- load into
`Classifier.net` with matching keys. Stride sits on the 3x3 conv ("ResNet v1.5"), as there.
These models default to ImageNet mean/std normalisation because those weights expect it.
"""
from __future__ import annotations

import torch
from torch import nn

from ._init import init_weights
from .classifier import IMAGENET_MEAN, IMAGENET_STD
from .registry import register_model


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride) -> 1x1 expand (x4), post-activation, identity or projection."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, base_width: int = 64):
        super().__init__()
        width = planes * base_width // 64  # wide variants widen only the 3x3 bottleneck
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != out:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, out, 1, stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + skip)


class ResNet(nn.Module):
    """x: (N, C, H, W) normalised -> (N, num_classes); total stride 32 (224 -> 7x7)."""

    def __init__(self, blocks: tuple[int, ...], num_classes: int, in_channels: int = 3,
                 width_per_group: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes, stages = 64, []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks)):
            stage = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                stage.append(Bottleneck(in_planes, planes, stride, width_per_group))
                in_planes = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_weights(self)
        # each residual branch starts at zero (Goyal et al. 2017; torchvision's zero_init_residual):
        # a fresh network is then well scaled even with BatchNorm frozen at its initial statistics
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("resnet50", min_image_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
def resnet50(num_classes: int, in_channels: int = 3, image_size: int = 224) -> ResNet:
    """ResNet-50, ~25.6M parameters with 1000 classes; made for 224/256 inputs."""
    return ResNet((3, 4, 6, 3), num_classes, in_channels)


@register_model("wide_resnet50_4", min_image_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
def wide_resnet50_4(num_classes: int, in_channels: int = 3, image_size: int = 224) -> ResNet:
    """Wide-ResNet-50-4 (4x wider 3x3 bottlenecks, as in MadryLab's `robustness`), ~223M params."""
    return ResNet((3, 4, 6, 3), num_classes, in_channels, width_per_group=64 * 4)
