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


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """exp E_x[KL(p(y|x) || p(y))] of class probabilities (N, K), mean and std over `splits`.

    The rows are split into `splits` contiguous parts (as in Salimans et al. 2016); p(y) is each
    part's mean prediction. 1 = every prediction equals the marginal; K = confident and balanced.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < splits:
        raise ValueError(f"need probabilities of shape (N >= splits={splits}, K), got {p.shape}")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        # 0 * log 0 = 0; where part > 0 the marginal is > 0 too
        ratio = np.where(part > 0, part / np.where(marginal > 0, marginal, 1.0), 1.0)
        kl = (part * np.log(ratio)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def _kth_nn_radius(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each row of x (N, D) to its k-th nearest other row: (N,)."""
    out = []
    for start in range(0, x.shape[0], chunk):
        d = torch.cdist(x[start:start + chunk], x)
        # k+1 smallest: the first is the point itself (distance 0)
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def prdc(real, fake, k: int = 5, chunk: int = 1024) -> dict:
    """Precision, recall (Kynkaanniemi et al. 2019), density, coverage (Naeem et al. 2020).

    real (N, D), fake (M, D) features. Each point's neighbourhood is the ball reaching its k-th
    nearest neighbour within its own set. precision: fraction of fakes inside some real ball;
    recall: fraction of reals inside some fake ball; density: mean number of real balls holding
    a fake, / k; coverage: fraction of real balls holding at least one fake. Float64, computed in
    chunks of `chunk` rows with torch.cdist so memory stays O(chunk * max(N, M)).
    """
    real = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    if real.shape[0] <= k or fake.shape[0] <= k:
        raise ValueError(f"need more than k={k} real and fake points, got {real.shape[0]} and {fake.shape[0]}")
    r_real, r_fake = _kth_nn_radius(real, k, chunk), _kth_nn_radius(fake, k, chunk)
    in_some_real, n_real_balls = [], []
    nearest_fake = torch.full((real.shape[0],), float("inf"), dtype=torch.float64)
    for start in range(0, fake.shape[0], chunk):
        d = torch.cdist(fake[start:start + chunk], real)           # (c, N)
        inside = d <= r_real[None]
        in_some_real.append(inside.any(1))
        n_real_balls.append(inside.sum(1))
        nearest_fake = torch.minimum(nearest_fake, d.min(0).values)
    in_some_fake = []
    for start in range(0, real.shape[0], chunk):
        d = torch.cdist(real[start:start + chunk], fake)           # (c, M)
        in_some_fake.append((d <= r_fake[None]).any(1))
    return {"precision": float(torch.cat(in_some_real).double().mean()),
            "recall": float(torch.cat(in_some_fake).double().mean()),
            "density": float(torch.cat(n_real_balls).double().mean() / k),
            "coverage": float((nearest_fake <= r_real).double().mean())}


def expected_calibration_error(confidence, correct, n_bins: int = 15) -> tuple[float, list[dict]]:
    """ECE with `n_bins` equal-width confidence bins (lo, hi] (Guo et al. 2017).

    confidence (N,) in [0, 1] (max softmax), correct (N,) bool. Returns the ECE,
    sum_b |acc_b - conf_b| * n_b / N, and per bin dict(lo, hi, count, accuracy, confidence)
    (accuracy/confidence None for empty bins).
    """
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    hit = np.asarray(correct, dtype=np.float64).ravel()
    if conf.shape != hit.shape or conf.size == 0:
        raise ValueError(f"need matching non-empty confidence and correctness, got {conf.shape} and {hit.shape}")
    # bin b holds (b/n, (b+1)/n]; confidence 0 joins the first bin
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    ece, bins = 0.0, []
    for b in range(n_bins):
        m = idx == b
        count = int(m.sum())
        acc = float(hit[m].mean()) if count else None
        cb = float(conf[m].mean()) if count else None
        if count:
            ece += abs(acc - cb) * count / conf.size
        bins.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "count": count, "accuracy": acc, "confidence": cb})
    return float(ece), bins


def save_stats(path, mu, sigma, **meta) -> None:
    """Write (mu, sigma) as .npz, readable by pytorch-fid; `meta` adds text fields (extractor, n, ...)."""
    np.savez(path, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
             **{k: np.array(str(v)) for k, v in meta.items()})


def load_stats(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(mu (D,), sigma (D, D), meta) from an .npz holding `mu` and `sigma` (ours or pytorch-fid's)."""
    with np.load(path, allow_pickle=False) as f:
        if "mu" not in f or "sigma" not in f:
            raise KeyError(f"{path} holds {sorted(f.files)}, not 'mu' and 'sigma'")
        meta = {k: str(f[k]) for k in f.files if k not in ("mu", "sigma")}
        return f["mu"].astype(np.float64), f["sigma"].astype(np.float64), meta
