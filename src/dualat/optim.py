"""Optimisers and learning-rate schedules of an OptimConfig, for every network dualat trains
(stage 1, DAT, JEM and the evaluation network)."""
from __future__ import annotations

import math

import torch

from .config import OptimConfig


def make_optimizer(params, o: OptimConfig) -> torch.optim.Optimizer:
    if o.optimizer == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                               weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


def learning_rate(o: OptimConfig, iteration: int, total: int) -> float:
    """The rate of 0-based `iteration` of `total`: linear warm-up over o.warmup iterations, then
    constant or cosine."""
    scale = min(1.0, (iteration + 1) / o.warmup) if o.warmup > 0 else 1.0
    if o.schedule == "constant" or total <= 1:
        return o.lr * scale
    return scale * 0.5 * o.lr * (1 + math.cos(math.pi * min(iteration, total) / total))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
