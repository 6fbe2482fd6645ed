import numpy as np
import torch

from dualat.metrics import auroc, frechet_distance, gaussian_stats


def test_auroc_hand_computed():
    assert auroc(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])) == 1.0
    assert auroc(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])) == 0.0
    # pairs: (2>1) (2<3) (4>1) (4>3) -> 3 of 4
    assert auroc(torch.tensor([2.0, 4.0]), torch.tensor([1.0, 3.0])) == 0.75
    # ties count one half
    assert auroc(torch.tensor([1.0]), torch.tensor([1.0])) == 0.5


def test_frechet_closed_form_and_self():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 5))
    mu, s = gaussian_stats(a)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-8
    # N(0, I) vs N(m, 4I): |m|^2 + tr(I + 4I - 2*2I) = |m|^2 + d
    m = np.full(5, 0.5)
    assert abs(frechet_distance(np.zeros(5), np.eye(5), m, 4 * np.eye(5)) - (1.25 + 5)) < 1e-9
    # singular covariance: finite, non-negative, real
    sing = np.zeros((5, 5)); sing[0, 0] = 1.0
    v = frechet_distance(np.zeros(5), sing, np.zeros(5), sing)
    assert np.isfinite(v) and v >= 0 and v < 1e-8
