"""Model size and cost: `count_parameters`, `forward_flops`."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import DualatError

# Transposed convolutions are not counted (none of the models here use them).
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared parameters counted once); buffers excluded.

    Works for models built on the meta device, so huge models can be sized for free.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def forward_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass on ONE input, counted as 2 x multiply-accumulates.

    input_shape: the input without batch dimension, e.g. (3, 32, 32) or (2,) for the mlp.
    Only convolutions (MACs = output elements x in_channels/groups x kernel area) and
    linear layers (MACs = output elements x in_features) are counted, via forward hooks;
    biases, normalisation, activations, pooling and the residual additions are ignored
    (a few percent for the models here). The pass runs under no_grad with every module in
    eval mode, so BN statistics are not touched; modes are restored afterwards.
    Models on the meta device are supported (nothing is computed, only shapes).
    """
    if not isinstance(input_shape, Sequence) or not input_shape or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape):
        raise DualatError(f"input_shape must be the positive sizes of one input without the "
                          f"batch dimension, e.g. (3, 32, 32); got {input_shape!r}")
    macs = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal macs
        macs += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal macs
        macs += out.numel() * m.in_features

    handles, modes = [], [(m, m.training) for m in model.modules()]
    for m in model.modules():
        if isinstance(m, _CONVS):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    p = next(model.parameters(), None)
    x = torch.rand(1, *input_shape, device=p.device if p is not None else "cpu",
                   dtype=p.dtype if p is not None and p.is_floating_point() else torch.float32)
    try:
        for m, _ in modes:
            m.training = False  # direct flag, so frozen-BN `train` overrides are not involved
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return 2 * macs
