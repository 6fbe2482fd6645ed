"""The numbers of the counterfactual family, as plain functions of tensors and arrays (formulas in
docs/guide.md, "Measuring counterfactuals"): closeness and sparsity, the FD per target class
pooled over classes, the k-NN distance ratio, IM1 and IM2."""
from __future__ import annotations

import numpy as np
import torch

from ..metrics import frechet_distance, gaussian_stats

CHANGED = 0.05   # a pixel counts as changed when some channel of it moved by more than this
IM_EPS = 1e-8    # the epsilon of IM1's and IM2's denominators


def closeness(x_cf: torch.Tensor, x: torch.Tensor) -> dict:
    """Mean L2 and L1 distance and mean fraction of pixels (H x W positions) changed by more than
    CHANGED in some channel; x_cf, x (P, C, H, W) in [0, 1]."""
    d = (x_cf - x).float()
    return {"l2": float(d.flatten(1).norm(dim=1).mean()), "l1": float(d.flatten(1).abs().sum(1).mean()),
            "changed_frac": float((d.abs().amax(1) > CHANGED).flatten(1).float().mean(1).mean())}


def class_stats(feats: np.ndarray, classes: np.ndarray) -> dict:
    """{class: (mu, sigma)} of features (N, D) grouped by classes (N,); classes with < 2 rows left out."""
    return {int(c): gaussian_stats(feats[classes == c]) for c in np.unique(classes) if (classes == c).sum() >= 2}


def pooled_fd(feats: np.ndarray, classes: np.ndarray, ref: dict) -> float:
    """FD pooled over classes: sum_c n_c FD(feats of class c, ref[c]) / sum_c n_c, over the classes
    with at least 2 rows here and a reference (ref: class_stats of the real images); NaN if none."""
    total = weight = 0.0
    for c in np.unique(classes):
        rows = feats[classes == c]
        if len(rows) < 2 or int(c) not in ref:
            continue
        total += len(rows) * frechet_distance(*gaussian_stats(rows), *ref[int(c)])
        weight += len(rows)
    return total / weight if weight else float("nan")


def _knn_mean(a: torch.Tensor, b: torch.Tensor, k: int, skip_self: bool) -> torch.Tensor:
    """Mean distance of each row of a (N, D) to its k nearest rows of b (M, D); skip_self drops
    the nearest one (a row of a is in b)."""
    out = []
    for s in range(0, len(a), 512):
        d = torch.cdist(a[s:s + 512], b)
        kk = min(k + skip_self, d.shape[1])
        out.append(d.topk(kk, dim=1, largest=False).values[:, int(skip_self):].mean(1))
    return torch.cat(out)


class KNNRatio:
    """Mean k-NN distance (pixel space, L2) of images to the real images of a given class, relative
    to the real-to-real k-NN distance of that class: ratio(x', t) = knn(x', R_t) / r_t, with
    knn(x', R_t) the mean distance of x' to its k nearest images of R_t and r_t the mean over z in
    R_t of knn(z, R_t without z). 1: as close to the class as its own images are to each other."""

    def __init__(self, real: torch.Tensor, labels: torch.Tensor, k: int = 5):
        self.k = k
        self.real = {int(c): real[labels == c].flatten(1).double() for c in labels.unique()}
        self.r = {c: float(_knn_mean(v, v, k, True).mean()) for c, v in self.real.items() if len(v) > 1}

    def __call__(self, x: torch.Tensor, targets: torch.Tensor) -> float:
        """Mean ratio over images x (P, C, H, W) toward targets (P,); NaN where a target class has
        fewer than 2 real images."""
        ratios = []
        for c in targets.unique().tolist():
            if c not in self.r:
                return float("nan")
            rows = x[targets == c].flatten(1).double()
            ratios.append(_knn_mean(rows, self.real[c], self.k, False) / self.r[c])
        return float(torch.cat(ratios).mean())


@torch.no_grad()
def _reconstruct(aes: dict, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Each row of x (P, C, H, W) through the autoencoder of its class (classes (P,))."""
    out = torch.empty_like(x)
    for c in classes.unique().tolist():
        m = classes == c
        out[m] = aes[f"class{c}"](x[m])
    return out


@torch.no_grad()
def im_scores(aes: dict, x: torch.Tensor, targets: torch.Tensor, original: torch.Tensor) -> dict:
    """IM1 and IM2 of Van Looveren & Klaise (2021), means over the P rows of x (P, C, H, W):
    IM1 = ||x - AE_t(x)||^2 / (||x - AE_o(x)||^2 + eps), IM2 = ||AE_t(x) - AE(x)||^2 / (||x||_1 + eps),
    t = target, o = original class, AE = the autoencoder of all classes. Lower is better."""
    x = x.float()
    rt, ro = _reconstruct(aes, x, targets), _reconstruct(aes, x, original)
    ra = torch.cat([aes["all"](x[s:s + 1000]) for s in range(0, len(x), 1000)])
    im1 = (x - rt).pow(2).flatten(1).sum(1) / ((x - ro).pow(2).flatten(1).sum(1) + IM_EPS)
    im2 = (rt - ra).pow(2).flatten(1).sum(1) / (x.abs().flatten(1).sum(1) + IM_EPS)
    return {"im1": float(im1.mean()), "im2": float(im2.mean())}


__all__ = ["closeness", "class_stats", "pooled_fd", "KNNRatio", "im_scores", "CHANGED", "IM_EPS"]
