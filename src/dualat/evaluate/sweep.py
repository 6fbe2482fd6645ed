"""`dualat eval --sweep-steps 10,20,40,80`: the generative metrics of fresh samples at several step
counts, against one reference computed once (evaluate/run.py's), as metrics.json's
"generative_sweep" = {"sampler", "extractor", "steps", "step_size", "n_samples", "points": [...]}."""
from __future__ import annotations

from ..errors import DualatError
from ..samplers import Draw, get_sampler
from .cost import format_points, measure_curve, pgd_draw, sgld_draw
from .options import GenerativeOptions, Target


def check_sweep_sampler(sampler: str) -> None:
    if not get_sampler(sampler).takes_steps:
        raise DualatError("--sweep-steps needs a sampler that takes steps: a JEM run's replay buffer has none; "
                          "add --sampler sgld (fresh chains) or drop --sweep-steps")


def generative_sweep(t: Target, sampler: str, ext, reference, draw: Draw, o: GenerativeOptions) -> dict:
    """The sweep of one sampler over o.sweep_steps: pgd (ascent on f_y from draw.seeds with the
    class-balanced draw.labels) or sgld (fresh chains from draw.init, the JEM run's initial
    distribution, jem.sgld_noise); reference = (real features, (mu, sigma)) of the main metrics."""
    check_sweep_sampler(sampler)
    model, cfg, dist, (real, ref) = t.model, t.cfg, t.dist, reference
    step_size, seed, steps_list = draw.step_size, draw.seed, o.sweep_steps
    n = len(draw.labels) if draw.labels is not None else draw.n
    if not get_sampler(sampler).needs_replay_buffer:
        sample = pgd_draw(model, ext, draw.seeds, draw.labels, step_size, seed, dist)
    else:
        sample = sgld_draw(model, ext, draw.init, n, step_size, cfg.jem.sgld_noise, cfg.jem.clamp, seed)
        dist = None  # every process ran the same chains itself
    points = measure_curve(model, sample, steps_list, ext, real, ref, k=o.k, is_splits=o.is_splits, dist=dist)
    return {"sampler": sampler, "extractor": ext.name, "steps": list(steps_list), "step_size": step_size,
            "n_samples": n, "sample_seed": seed, "points": points,
            "protocol": "each point: fresh samples at that step count (the same seeds for every point), metrics "
                        "against the same reference as the main generative metrics; passes_per_image = counted "
                        "forward+backward passes of the model per sample"}


def format_sweep(sweep: dict) -> str:
    return format_points(sweep["points"], f"== generative sweep ({sweep['sampler']}, {sweep['extractor']} features, "
                                          f"{sweep['n_samples']} samples, step size {sweep['step_size']:g})")
