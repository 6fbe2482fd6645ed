"""Generation: descend the energy from seed images with the one PGD engine (method.md section 6)."""
from __future__ import annotations

import torch

from .pgd import Unbounded, eval_mode, pgd


def balanced_labels(n: int, num_classes: int, classes: list[int] | None = None) -> torch.Tensor:
    """Labels cycled evenly over `classes` (default all): 0,1,...,K-1,0,1,..."""
    pool = torch.tensor(classes if classes else list(range(num_classes)), dtype=torch.long)
    return pool[torch.arange(n) % len(pool)]


def generate(model, seeds, labels: torch.Tensor | None, steps: int, step_size: float,
             unconditional: bool = False, batch_size: int = 256, generator: torch.Generator | None = None,
             device=None, callback=None, autocast=None) -> torch.Tensor:
    """Samples (n, ...) in [0, 1]: ascend f_y (class-conditional) or logsumexp (unconditional).

    seeds: a seed source (`.sample(n, y, generator)`) or a tensor of seed images (n, ...);
    labels: (n,) int64 conditioning classes (also picks per-class Gaussian seeds).
    Works in batches so memory stays bounded; the model is used in eval mode.
    """
    n = labels.shape[0] if labels is not None else seeds.shape[0]
    device = device or next(model.parameters()).device
    out = []
    with eval_mode(model):
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            y = labels[start:stop] if labels is not None else None
            x0 = seeds[start:stop] if torch.is_tensor(seeds) else seeds.sample(stop - start, y, generator)
            x = pgd(model, x0.to(device), None if y is None else y.to(device),
                    objective="logsumexp" if unconditional else "class_logit", threat=Unbounded(),
                    steps=steps, step_size=step_size, callback=callback, autocast=autocast)
            out.append(x.cpu())
    return torch.cat(out)
