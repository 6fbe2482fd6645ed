"""Clean accuracy and PGD robust accuracy with the project's PGD engine; default budgets."""
from __future__ import annotations

import torch

from ..configparse import parse_number
from ..errors import DualatError
from ..pgd import eval_mode, make_threat, pgd
from ..ui import progress

# Linf budgets commonly reported per data family (the run's own L2 budget is the L2 default)
LINF_DEFAULTS = {"cifar10": 8 / 255, "cifar100": 8 / 255, "imagenet": 4 / 255, "imagefolder": 4 / 255}
LINF_DEFAULT_GRAY = 0.1       # Fashion-MNIST / MNIST / digits: the usual MNIST-family budget
L2_DEFAULTS = {"cifar10": 0.5, "cifar100": 0.5, "imagenet": 3.0, "imagefolder": 3.0}


def parse_eps(text) -> float:
    """A budget from a number or '8/255'-style text; must be positive."""
    try:
        value = parse_number(text)
    except (ValueError, ZeroDivisionError):
        raise DualatError(f"cannot read epsilon {text!r}; write a number such as 0.5 "
                          f"or a fraction such as 8/255") from None
    if not value > 0:
        raise DualatError(f"epsilon must be positive, got {text!r}")
    return value


def default_eps(cfg) -> dict[str, float]:
    """{'L2': ..., 'Linf': ...} for a run: its threat model's budget (cfg.threat) for its own norm; for the
    other norm, CIFAR 0.5 / 8/255, ImageNet 3.0 / 4/255, MNIST-family and others Linf 0.1
    (L2 of a Linf-trained gray run: 1.0)."""
    a, name = cfg.threat, cfg.data.name
    out = {"L2": L2_DEFAULTS.get(name, 1.0), "Linf": LINF_DEFAULTS.get(name, LINF_DEFAULT_GRAY)}
    out[a.norm] = float(a.eps)
    return out


@torch.no_grad()
def clean_accuracy(model, dataset, n: int | None = None, batch_size: int = 500, show_progress: bool = False) -> float:
    """Fraction of the first n test images classified correctly (eval mode; n None = all)."""
    device = next(model.parameters()).device
    n = len(dataset) if n is None else min(n, len(dataset))
    correct = 0
    bar = progress(n, 0, "clean accuracy", show_progress)
    with eval_mode(model):
        for start in range(0, n, batch_size):
            x, y = dataset.batch(torch.arange(start, min(start + batch_size, n)))
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
            bar.update(len(y))
    bar.close()
    return correct / max(n, 1)


PGD_SEED, PGD_BATCH = 0, 250  # the random starts' generator seed (restarts > 1) and images per batch


def pgd_accuracy(model, dataset, n: int | None, norm: str = "L2", eps: float = 1.0, steps: int = 10,
                 step_size: float | None = None, restarts: int = 1, show_progress: bool = False) -> float:
    """Accuracy on the first n images (None = all) under untargeted PGD on cross-entropy.

    An image counts as robust only if it survives every one of `restarts` runs (random start in
    the ball when restarts > 1). step_size defaults to 2.5 * eps / steps (Madry et al.).
    """
    device = next(model.parameters()).device
    step_size = step_size or 2.5 * eps / steps
    threat = make_threat(norm, eps)
    g, batch_size = torch.Generator().manual_seed(PGD_SEED), PGD_BATCH
    n = len(dataset) if n is None else min(n, len(dataset))
    robust = 0
    bar = progress(n, 0, f"PGD-{steps} {norm} eps={eps:.4g}", show_progress)
    with eval_mode(model):
        for start in range(0, n, batch_size):
            x, y = dataset.batch(torch.arange(start, min(start + batch_size, n)))
            x, y = x.to(device), y.to(device)
            still = torch.ones_like(y, dtype=torch.bool)
            for r in range(restarts):
                x_adv = pgd(model, x, y, objective="ce", threat=threat, steps=steps, step_size=step_size,
                            random_start=g if restarts > 1 else False)
                with torch.no_grad():
                    still &= model(x_adv).argmax(1) == y
            robust += still.sum().item()
            bar.update(len(y))
    bar.close()
    return robust / max(n, 1)
