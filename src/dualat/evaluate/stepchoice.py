"""The sampler's steps, chosen at the end of stage 2 (in the manner of the DAT authors'
`find_optimal_steps`): a short sweep of step counts around the final curriculum T, each scored
by the Frechet distance of a few hundred class-balanced samples from held-out seeds against a
fixed slice of the TRAINING split (the test split is never used), in the evaluation network's
features. One chain of max(candidates) steps gives every candidate (a k-step sample is the k-th
iterate of the same chain), so the sweep costs n_samples x max(candidates) passes.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..metrics import frechet_distance, gaussian_stats
from ..sampler import balanced_labels
from ..samplers import Draw, generate
from .generative import reference_stats

FACTORS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)   # candidates: these multiples of the final T
N_REF = 2000                                # the last 2,000 training images are the reference


def candidates(final_T: int) -> list[int]:
    """The step counts tried around `final_T`: round(f * T) for f in FACTORS, unique, >= 1."""
    T = max(int(final_T), 1)
    return sorted({max(1, int(round(f * T))) for f in FACTORS})


def choose_steps(draw: Draw, features_fn, train_set, final_T: int) -> dict:
    """{'sample_steps': the candidate with the lowest FD, 'points': [{'steps', 'fd', 'class_agreement'}],
    and the protocol}. draw: the EMA model, n samples, the step size, the held-out seed source
    (draw.seeds), the generator seed and the autocast; features_fn(x) -> (features, predictions) of
    the evaluation network."""
    t0 = time.time()
    steps, step_size, n_samples, seed = candidates(final_T), draw.step_size, draw.n, draw.seed
    n_ref = min(N_REF, len(train_set))
    ref = reference_stats(features_fn, train_set, indices=torch.arange(len(train_set) - n_ref, len(train_set)))
    labels = balanced_labels(n_samples, train_set.num_classes)
    seeds = draw.seeds.sample(n_samples, labels, torch.Generator().manual_seed(seed))
    kept: dict[int, list[torch.Tensor]] = {k: [] for k in steps}

    def keep(i, x):
        if i in kept:
            kept[i].append(x.detach().cpu().clone())

    generate(draw.model, seeds, labels, max(steps), step_size, callback=keep, autocast=draw.autocast)
    points = []
    for k in steps:
        feats, preds = features_fn(torch.cat(kept[k]))
        points.append({"steps": k, "fd": float(frechet_distance(*gaussian_stats(feats), *ref)),
                       "class_agreement": float((np.asarray(preds) == labels.numpy()).mean())})
    best = min(points, key=lambda p: p["fd"])
    return {"sample_steps": best["steps"], "final_T": int(final_T), "step_size": step_size, "points": points,
            "n_samples": n_samples, "n_ref": n_ref, "sample_seed": seed, "wall_s": round(time.time() - t0, 1),
            "protocol": (f"{n_samples} class-balanced samples from held-out seeds, {step_size:g} per step, at "
                         f"{', '.join(map(str, steps))} steps (multiples {', '.join(f'{f:g}' for f in FACTORS)} of "
                         f"the final T {final_T}); FD in the evaluation network's features against the last "
                         f"{n_ref} training images (never the test split); the lowest FD wins")}


def format_choice(choice: dict) -> str:
    table = ", ".join(f"{p['steps']}: {p['fd']:.2f}" for p in choice["points"])
    return (f"sampler steps: {choice['sample_steps']} chosen by FD on {choice['n_samples']} samples against "
            f"{choice['n_ref']} training images (steps: FD {table}; {choice['wall_s']:.0f} s)")
