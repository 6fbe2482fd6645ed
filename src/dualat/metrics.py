"""Small, exact metric helpers shared by training and evaluation."""
from __future__ import annotations

import numpy as np
import torch


def auroc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """Area under the ROC curve of scores `pos` (label 1) against `neg` (label 0).

    Mann-Whitney U with average ranks for ties; 1.0 = every positive scores above every negative.
    """
    pos = pos.detach().double().flatten().cpu()
    neg = neg.detach().double().flatten().cpu()
    n_pos, n_neg = pos.numel(), neg.numel()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    scores = torch.cat([pos, neg])
    order = torch.argsort(scores)
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=scores.dtype)
    # average the ranks of tied scores
    uniq, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    if uniq.numel() < scores.numel():
        sums = torch.zeros_like(uniq).index_add_(0, inverse, ranks)
        ranks = (sums / counts)[inverse]
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) in float64 of features (N, D)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features of shape (N>=2, D), got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1-mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) in float64.

    tr((S1 S2)^(1/2)) is computed as the sum of sqrt-eigenvalues of the symmetric PSD matrix
    S1^(1/2) S2 S1^(1/2), which has the same spectrum: no complex values, no NaN, stable for
    near-singular covariances.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    root1 = _sqrtm_psd(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean, 0.0))
