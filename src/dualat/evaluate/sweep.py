"""`dualat eval --sweep-steps 10,20,40,80`: the generative metrics of fresh samples at several step
counts, against one reference computed once (evaluate/run.py's), as metrics.json's
"generative_sweep" = {"sampler", "extractor", "steps", "step_size", "n_samples", "points": [...]}."""
from __future__ import annotations

from ..errors import DualatError
from ..samplers import get_sampler
from ..sgld import initial_distribution
from .cost import format_points, measure_curve, pgd_draw, sgld_draw


def check_sweep_sampler(sampler: str) -> None:
    if not get_sampler(sampler).takes_steps:
        raise DualatError("--sweep-steps needs a sampler that takes steps: a JEM run's replay buffer has none; "
                          "add --sampler sgld (fresh chains) or drop --sweep-steps")


def generative_sweep(model, cfg, sampler: str, ext, real, ref, steps_list, seeds, labels, step_size: float,
                     seed: int, train_set, k: int, is_splits: int, dist=None) -> dict:
    """The sweep of one sampler: pgd (ascent on f_y from the held-out `seeds`, class-balanced
    `labels`) or sgld (fresh chains from the JEM run's initial distribution, jem.sgld_noise)."""
    check_sweep_sampler(sampler)
    if not get_sampler(sampler).needs_replay_buffer:
        draw = pgd_draw(model, ext, seeds, labels, step_size, seed, dist)
    else:
        init = initial_distribution(cfg, train_set, tuple(train_set.shape))
        draw = sgld_draw(model, ext, init, len(labels), step_size, cfg.jem.sgld_noise, cfg.jem.clamp, seed)
        dist = None  # every process ran the same chains itself
    points = measure_curve(model, draw, steps_list, ext, real, ref, k=k, is_splits=is_splits, dist=dist)
    return {"sampler": sampler, "extractor": ext.name, "steps": list(steps_list), "step_size": step_size,
            "n_samples": len(labels), "sample_seed": seed, "points": points,
            "protocol": "each point: fresh samples at that step count (the same seeds for every point), metrics "
                        "against the same reference as the main generative metrics; passes_per_image = counted "
                        "forward+backward passes of the model per sample"}


def format_sweep(sweep: dict) -> str:
    return format_points(sweep["points"], f"== generative sweep ({sweep['sampler']}, {sweep['extractor']} features, "
                                          f"{sweep['n_samples']} samples, step size {sweep['step_size']:g})")
