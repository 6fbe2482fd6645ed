"""Sample quality in an evaluation network's features: Frechet distance and class agreement."""
from __future__ import annotations

import numpy as np
import torch

from ..metrics import frechet_distance, gaussian_stats
from ..sample import balanced_labels, generate


def reference_stats(features_fn, dataset, n: int | None = None, batch_size: int = 1000):
    """(mu, sigma) of the evaluation network's features of the first n images of `dataset`."""
    n = len(dataset) if n is None else min(n, len(dataset))
    feats = []
    for start in range(0, n, batch_size):
        x, _ = dataset.batch(torch.arange(start, min(start + batch_size, n)))
        feats.append(features_fn(x)[0])
    return gaussian_stats(np.concatenate(feats))


class GenerationProbe:
    """A fixed set of seeds and labels, so that every evaluation of a run is comparable.

    `__call__(model, steps, step_size)` generates len(labels) class-balanced samples and returns
    the Frechet distance to the reference statistics and the fraction of samples the evaluation
    network assigns to the conditioning class.
    """

    def __init__(self, features_fn, ref_stats, seed_source, num_classes: int, n: int, seed: int = 0):
        self.features_fn, self.ref = features_fn, ref_stats
        self.labels = balanced_labels(n, num_classes)
        g = torch.Generator().manual_seed(seed)
        self.seeds = seed_source.sample(n, self.labels, g)

    def __call__(self, model, steps: int, step_size: float, unconditional: bool = False, autocast=None) -> dict:
        x = generate(model, self.seeds, self.labels, steps, step_size, unconditional=unconditional,
                     autocast=autocast)
        feats, preds = self.features_fn(x)
        mu, sigma = gaussian_stats(feats)
        return {"fd": frechet_distance(mu, sigma, *self.ref),
                "class_agreement": float((preds == self.labels.numpy()).mean()),
                "samples": x}
