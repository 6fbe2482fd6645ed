"""Weight initialisation shared by the architectures."""
from __future__ import annotations

from torch import nn


def init_weights(model: nn.Module) -> None:
    """He init for convs (suits the ReLU nets here), BN to identity, small zero-bias heads.

    Works on the meta device too (shape-only models for parameter counting).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            # Zero bias: all classes start with equal logits, so the initial energy is flat.
            nn.init.zeros_(m.bias)
