"""Sample quality in a feature extractor's space: Frechet distance, Inception-Score-style score,
precision / recall / density / coverage, class agreement; and the seeded sampling they measure."""
from __future__ import annotations

import numpy as np
import torch

from ..metrics import frechet_distance, gaussian_stats, inception_score, prdc
from ..sampler import balanced_labels
from ..samplers import SAMPLERS, Draw, generate
from ..ui import progress


def reference_stats(features_fn, dataset, n: int | None = None, batch_size: int = 1000, indices=None):
    """(mu, sigma) of the evaluation network's features of the first n images of `dataset`, or of
    the images at `indices` (a 1-D index tensor) when given."""
    if indices is None:
        indices = torch.arange(len(dataset) if n is None else min(n, len(dataset)))
    feats = [features_fn(dataset.batch(indices[i:i + batch_size])[0])[0] for i in range(0, len(indices), batch_size)]
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

    def __call__(self, model, steps: int, step_size: float, unconditional: bool = False, autocast=None,
                 dist=None) -> dict:
        """dist (dualat.distributed.Dist, under torchrun): each process generates its share of the
        samples and the features are gathered; `samples` / `labels` are then this process's share."""
        part = dist.shard(len(self.labels)) if dist is not None else slice(None)
        labels = self.labels[part]
        x = generate(model, self.seeds[part], labels, steps, step_size, unconditional=unconditional,
                     autocast=autocast)
        feats, preds = self.features_fn(x)
        if dist is not None:
            feats, preds = dist.gather_arrays(feats), dist.gather_arrays(preds)
        mu, sigma = gaussian_stats(feats)
        return {"fd": frechet_distance(mu, sigma, *self.ref),
                "class_agreement": float((preds == self.labels.numpy()).mean()),
                "samples": x, "labels": labels}


def draw_samples(model, seed_source, labels: torch.Tensor, steps: int, step_size: float, seed: int = 0,
                 batch_size: int = 500, show_progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples, seeds), both (n, ...) float in [0, 1] on the CPU: class-conditional generation
    (ascent on f_y, eval mode) from seeds of `seed_source`; labels (n,) int64 conditioning classes."""
    d = Draw(model, len(labels), steps, step_size, seed, labels=labels, seeds=seed_source, batch_size=batch_size,
             show_progress=show_progress)
    parts = list(SAMPLERS["pgd"].chunks(d))
    return torch.cat([p.samples for p in parts]), torch.cat([p.starts for p in parts])


def sample_features(extractor, chunks, keep: int | None = None, dist=None) -> dict:
    """Pass each sampler chunk (samplers.Chunk) straight through `extractor`.

    Returns dict(feats (n, D), probs (n, K), seed_feats (n, D), labels (n,), samples uint8 (m, ...))
    where the first m = min(n, keep) samples are kept (keep None = as many as fit in 512 MiB of
    uint8). dist (dualat.distributed.Dist, under torchrun): `chunks` are this process's share; the
    features are gathered on every process, `samples` only on rank 0 (None elsewhere).
    """
    out, kept = [], []
    for start, y, x0, x in chunks:
        if keep is None:
            keep = max(100, (512 << 20) // int(np.prod(x.shape[1:])))
        f, p = extractor(x)
        out.append((start, f, p, extractor(x0)[0], y))
        if start < keep:
            kept.append((start, x[:keep - start].mul(255).round().to(torch.uint8)))
    if dist is not None:
        out = sorted((c for part in dist.gather_objects(out) for c in part), key=lambda c: c[0])
        kept = dist.gather_to_main(kept)
        kept = None if kept is None else sorted((c for part in kept for c in part), key=lambda c: c[0])
    return {"feats": np.concatenate([c[1] for c in out]), "probs": np.concatenate([c[2] for c in out]),
            "seed_feats": np.concatenate([c[3] for c in out]), "labels": torch.cat([c[4] for c in out]),
            "samples": None if kept is None else torch.cat([x for _, x in kept])}


def dataset_features(extractor, dataset, n: int | None = None, seed: int = 0, chunk: int = 2000,
                     show_progress: bool = False, desc: str = "real features"):
    """Extractor (features (n, D), probabilities (n, K)) of n images of `dataset` drawn without
    replacement with a fixed seed (all images, in order, when n is None or >= len)."""
    total = len(dataset)
    if n is None or n >= total:
        idx = torch.arange(total)
    else:
        idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].sort().values
    feats, probs = [], []
    bar = progress(len(idx), 0, desc, show_progress)
    for start in range(0, len(idx), chunk):
        x, _ = dataset.batch(idx[start:start + chunk])
        f, p = extractor(x)
        feats.append(f)
        probs.append(p)
        bar.update(len(x))
    bar.close()
    return np.concatenate(feats), np.concatenate(probs)


def generative_metrics(fake_feats, fake_probs, real_feats, ref_stats=None, k: int = 5, splits: int = 10) -> dict:
    """FD, Inception-Score-style score, precision/recall/density/coverage in one feature space.

    fake_feats (M, D), fake_probs (M, K) of generated images; real_feats (N, D) of real images;
    ref_stats (mu, sigma) for the FD (default: those of real_feats).
    """
    mu_r, sigma_r = ref_stats if ref_stats is not None else gaussian_stats(real_feats)
    mu, sigma = gaussian_stats(fake_feats)
    is_mean, is_std = inception_score(fake_probs, splits)
    return {"fd": frechet_distance(mu, sigma, mu_r, sigma_r), "inception_score": is_mean,
            "inception_score_std": is_std, **prdc(real_feats, fake_feats, k=k)}
