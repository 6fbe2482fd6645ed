"""Small models: `small_cnn` (the project default, 8x8 to 28x28 greyscale) and `mlp` (2-D toys)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import DualatError
from ._init import init_weights
from .registry import register_model


class SmallCNN(nn.Module):
    """Five 3x3 conv + BN + ReLU layers, two of stride 2, global average pool, linear head.

    x: (N, C, H, W), normalised, any H, W >= 1 (designed for 8x8 and 28x28);
    returns (N, num_classes). Channel widths are (32, 32, 64, 64, 128) times `width`.
    Padding 1 everywhere and adaptive pooling at the end are what let the same net take
    8x8 (-> 4 -> 2) and 28x28 (-> 14 -> 7) inputs.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, width: float = 1.0):
        super().__init__()
        widths = [max(1, round(w * width)) for w in (32, 32, 64, 64, 128)]
        # Downsample at layers 2 and 4: the expensive wide layers run at 1/4 and 1/16 area.
        strides = (1, 2, 1, 2, 1)
        layers, prev = [], in_channels
        for w, s in zip(widths, strides):
            layers += [nn.Conv2d(prev, w, 3, s, 1, bias=False), nn.BatchNorm2d(w),
                       nn.ReLU(inplace=True)]
            prev = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


_ACTIVATIONS = {"silu": nn.SiLU, "softplus": nn.Softplus}


class MLP(nn.Module):
    """Three hidden layers of smooth activations, no BatchNorm: x (N, in_features) -> (N, K).

    Smooth activations (SiLU/Softplus, not ReLU) keep the energy landscape and its input
    gradient continuous, which is what toy 2-D energy plots and sampling need.
    """

    def __init__(self, num_classes: int, in_features: int = 2, hidden: int = 128,
                 activation: str = "silu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise DualatError(f"unknown mlp activation {activation!r}; use one of "
                              f"{', '.join(_ACTIVATIONS)}")
        for value, what in ((in_features, "in_features"), (hidden, "hidden")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DualatError(f"mlp {what} must be an integer >= 1, got {value!r}")
        self.in_features = in_features
        act = _ACTIVATIONS[activation]
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden), act(),
            nn.Linear(hidden, hidden), act(),
            nn.Linear(hidden, hidden), act(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise DualatError(f"mlp expects inputs of shape (N, {self.in_features}), "
                              f"got {tuple(x.shape)}")
        return self.layers(x)


@register_model("small_cnn", min_image_size=8)
def small_cnn(num_classes: int, in_channels: int = 1, image_size: int = 28,
              width: float = 1.0) -> SmallCNN:
    """The project default for 28x28 Fashion-MNIST and 8x8 digits; `width` scales channels."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise DualatError(f"small_cnn width must be a positive number, got {width!r}")
    return SmallCNN(num_classes, in_channels, float(width))


@register_model("mlp", vector_input=True, mean=0.0, std=1.0)
def mlp(num_classes: int, in_channels: int | None = None, image_size: int | None = None,
        in_features: int = 2,
        hidden: int = 128, activation: str = "silu") -> MLP:
    """MLP for (N, in_features) toy data; identity normalisation by default.

    create_model passes a given in_channels on as in_features; image_size is unused.
    """
    return MLP(num_classes, in_features, hidden, activation)
