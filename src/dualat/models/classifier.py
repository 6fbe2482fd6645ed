"""`Classifier`: input normalisation inside the model (AutoAttack / RobustBench convention).

A Classifier takes raw inputs in [0, 1] -- images (N, C, H, W) or feature vectors (N, D) --
and returns logits (N, K). Keeping the normalisation inside means attacks, energies and
epsilon balls all live in [0, 1] pixel space, and a public backbone checkpoint loads into
`Classifier.net` unchanged.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import DualatError

# Per-channel statistics that public checkpoints were trained with.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_stat(value, channels: int | None, what: str) -> list[float]:
    """A number or a per-channel sequence -> list of C floats, broadcast to `channels` if given.

    Validated in Python, before any tensor exists, so building under
    `torch.device("meta")` (shape-only models) works too.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().flatten().tolist()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        vals = [float(value)]
    elif isinstance(value, Sequence) and not isinstance(value, str):
        try:
            vals = [float(v) for v in value]
        except (TypeError, ValueError):
            raise DualatError(f"{what} must be numbers, got {value!r}") from None
    else:
        raise DualatError(f"{what} must be a number or a list of per-channel numbers, got {value!r}")
    if not vals:
        raise DualatError(f"{what} is empty; give one number or one per channel")
    if channels is not None and len(vals) == 1:
        vals = vals * channels
    if channels is not None and len(vals) != channels:
        raise DualatError(f"{what} has {len(vals)} values but the model takes {channels} "
                          f"channels; give one value or {channels}")
    if not all(math.isfinite(v) for v in vals):
        raise DualatError(f"{what} must be finite, got {value!r}")
    return vals


class Classifier(nn.Module):
    """logits = net((x - mean) / std).

    x: (N, C, H, W) or (N, D), float, values in [0, 1]; returns (N, K) logits.
    mean, std: a number or one value per channel / feature (default 0.5 and 0.5, which maps
    [0, 1] to [-1, 1]). They are buffers of shape (1, C, 1, 1), so they follow `.to()` and
    are saved in the state dict; for 2-D inputs the same values are used as (1, D).
    in_channels: number of channels (or features) a scalar mean/std is broadcast to;
    optional when mean/std are per-channel lists.
    """

    def __init__(self, net: nn.Module, mean=0.5, std=0.5, in_channels: int | None = None):
        super().__init__()
        mean = 0.5 if mean is None else mean
        std = 0.5 if std is None else std
        mean_v = _as_stat(mean, in_channels, "mean")
        channels = in_channels if in_channels is not None else (
            len(mean_v) if len(mean_v) > 1 else None)
        std_v = _as_stat(std, channels, "std")
        if len(std_v) > len(mean_v):  # scalar mean, per-channel std
            mean_v = mean_v * len(std_v)
        if min(std_v) <= 0:
            raise DualatError(f"std must be positive, got {std!r}")
        self.net = net
        self.register_buffer("mean", torch.tensor(mean_v).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std_v).view(1, -1, 1, 1))

    @property
    def in_channels(self) -> int:
        """Channels (or features) the normalisation expects; 1 means 'broadcast to any'."""
        return self.mean.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.mean.shape[1]
        if x.dim() == 4:
            mean, std = self.mean, self.std
        elif x.dim() == 2:
            mean, std = self.mean.view(1, -1), self.std.view(1, -1)
        else:
            raise DualatError(f"model input must be (N, C, H, W) images or (N, D) vectors, "
                              f"got shape {tuple(x.shape)}")
        if c > 1 and x.shape[1] != c:
            raise DualatError(f"model input has {x.shape[1]} channels but the model expects {c}; "
                              f"check data.channels or the model's in_channels")
        return self.net((x - mean) / std)

    def extra_repr(self) -> str:
        if self.mean.is_meta:  # shape-only models (parameter counting) have no values
            return f"channels={self.mean.shape[1]}"
        fmt = lambda t: "(" + ", ".join(f"{v:.4g}" for v in t.flatten().tolist()) + ")"  # noqa: E731
        return f"mean={fmt(self.mean)}, std={fmt(self.std)}"
