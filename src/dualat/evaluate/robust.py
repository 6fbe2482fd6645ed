"""Clean accuracy and PGD robust accuracy with the project's PGD engine."""
from __future__ import annotations

import torch

from ..pgd import eval_mode, make_threat, pgd


@torch.no_grad()
def clean_accuracy(model, dataset, n: int | None = None, batch_size: int = 500) -> float:
    """Fraction of the first n test images classified correctly (eval mode)."""
    device = next(model.parameters()).device
    n = len(dataset) if n is None else min(n, len(dataset))
    correct = 0
    with eval_mode(model):
        for start in range(0, n, batch_size):
            x, y = dataset.batch(torch.arange(start, min(start + batch_size, n)))
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    return correct / max(n, 1)


def pgd_accuracy(model, dataset, n: int, norm: str = "L2", eps: float = 1.0, steps: int = 10,
                 step_size: float | None = None, restarts: int = 1, batch_size: int = 250,
                 seed: int = 0) -> float:
    """Accuracy under untargeted PGD-CE (worst over `restarts`; random start when restarts > 1).

    step_size defaults to 2.5 * eps / steps (Madry et al.).
    """
    device = next(model.parameters()).device
    step_size = step_size or 2.5 * eps / steps
    threat = make_threat(norm, eps)
    g = torch.Generator().manual_seed(seed)
    n = min(n, len(dataset))
    robust = 0
    with eval_mode(model):
        for start in range(0, n, batch_size):
            x, y = dataset.batch(torch.arange(start, min(start + batch_size, n)))
            x, y = x.to(device), y.to(device)
            still = torch.ones_like(y, dtype=torch.bool)
            for r in range(restarts):
                x_adv = pgd(model, x, y, objective="ce", threat=threat, steps=steps, step_size=step_size,
                            random_start=restarts > 1, generator=g)
                with torch.no_grad():
                    still &= model(x_adv).argmax(1) == y
            robust += still.sum().item()
    return robust / max(n, 1)
