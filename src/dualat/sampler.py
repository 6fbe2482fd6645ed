"""The PGD sampler: descend the energy from seed images with the one PGD engine (method.md
section 6), batch by batch, and its defaults for a run (the one owner of "final T, 2x step").

    generate(model, seeds, labels, steps, step_size)        -> (n, ...) float in [0, 1]
"""
from __future__ import annotations

import torch

from .pgd import Unbounded, eval_mode, pgd


def default_steps(cfg, final_T: int | None = None, chosen: int | None = None) -> int:
    """The sampler's default number of steps for a run: `chosen` where the model names one (a
    bundled model's card.json `sample_steps`, picked by a step sweep), else its final curriculum
    T (the T it was trained to descend), else stage2.t_max."""
    return chosen or final_T or cfg.stage2.t_max


def default_step_size(cfg) -> float:
    """The sampler's default step for a run: twice the training step (stage2.step_size)."""
    return 2 * cfg.stage2.step_size


def balanced_labels(n: int, num_classes: int, classes: list[int] | None = None) -> torch.Tensor:
    """Labels cycled evenly over `classes` (default all): 0,1,...,K-1,0,1,..."""
    pool = torch.tensor(classes if classes else list(range(num_classes)), dtype=torch.long)
    return pool[torch.arange(n) % len(pool)]


def generate_batches(model, seeds, labels: torch.Tensor | None, steps: int, step_size: float,
                     unconditional: bool = False, batch_size: int = 256, generator: torch.Generator | None = None,
                     device=None, step_callback=None, autocast=None, n: int | None = None,
                     share: tuple[int, int] = (0, 1)):
    """Yield (start, x0, x) per batch: seeds x0 and samples x, both (b, ...) in [0, 1] on the CPU.

    seeds: a seed source (`.sample(b, y, generator)`) or a tensor of seed images (n, ...);
    labels: (n,) int64 conditioning classes (also picks per-class Gaussian seeds), or None for
    unconditional sampling from a seed source, which then needs `n`.
    step_callback(start, i, x) sees the seeds (i = 0) and every iterate (i = 1..steps) of the
    batch starting at sample `start`. Seeds are drawn batch by batch from `generator`, so the
    result is a function of (generator seed, batch_size). The model is used in eval mode.
    share = (rank, world_size): only batches rank, rank + world_size, ... are generated and
    yielded (one process of several); seeds are still drawn for every batch, so each sample is
    the same whatever the number of processes.
    """
    rank, world = share
    if n is None:
        n = labels.shape[0] if labels is not None else seeds.shape[0]
    device = device or next(model.parameters()).device
    with eval_mode(model):
        for k, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            y = labels[start:stop] if labels is not None else None
            x0 = seeds[start:stop] if torch.is_tensor(seeds) else seeds.sample(stop - start, y, generator)
            if k % world != rank:
                continue
            cb = None
            if step_callback is not None:
                step_callback(start, 0, x0)
                cb = lambda i, x, s=start: step_callback(s, i, x)  # noqa: E731
            x = pgd(model, x0.to(device), None if y is None else y.to(device),
                    objective="logsumexp" if unconditional else "class_logit", threat=Unbounded(),
                    steps=steps, step_size=step_size, callback=cb, autocast=autocast)
            yield start, x0.cpu(), x.cpu()


def generate(model, seeds, labels: torch.Tensor | None, steps: int, step_size: float,
             unconditional: bool = False, batch_size: int = 256, generator: torch.Generator | None = None,
             device=None, callback=None, autocast=None) -> torch.Tensor:
    """Samples (n, ...) in [0, 1]: ascend f_y (class-conditional) or logsumexp (unconditional).

    seeds: a seed source (`.sample(n, y, generator)`) or a tensor of seed images (n, ...);
    labels: (n,) int64 conditioning classes (also picks per-class Gaussian seeds).
    `callback(i, x)` sees every iterate of every batch. Works in batches so memory stays bounded.
    """
    cb = None if callback is None else (lambda start, i, x: callback(i, x) if i > 0 else None)
    return torch.cat([x for _, _, x in generate_batches(model, seeds, labels, steps, step_size, unconditional,
                                                         batch_size, generator, device, cb, autocast)])


__all__ = ["default_steps", "default_step_size", "balanced_labels", "generate_batches", "generate"]
