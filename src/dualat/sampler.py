"""The PGD sampler's defaults for a run (the one owner of "final T, 2x step") and its class-balanced
labels; the sampler itself (`generate`, `generate_batches`) is samplers.py's."""
from __future__ import annotations

import torch


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


__all__ = ["default_steps", "default_step_size", "balanced_labels"]
