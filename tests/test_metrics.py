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


def test_inception_score_bounds():
    from dualat.metrics import inception_score
    k = 10
    uniform = np.full((200, k), 1.0 / k)
    mean, std = inception_score(uniform, splits=10)
    assert abs(mean - 1.0) < 1e-12 and std < 1e-12
    confident = np.eye(k)[np.arange(200) % k]          # one-hot, every split balanced
    mean, std = inception_score(confident, splits=10)
    assert abs(mean - k) < 1e-9 and std < 1e-9
    # half confident: two classes only -> 2
    two = np.eye(k)[np.arange(200) % 2]
    assert abs(inception_score(two, splits=10)[0] - 2) < 1e-9


def test_prdc_self_and_far():
    from dualat.metrics import prdc
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    same = prdc(real, real, k=5)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    # each real ball holds its centre and its k neighbours: density of a set vs itself = (k+1)/k,
    # up to rounding of the matmul-based cdist for the neighbour lying exactly on a ball's edge
    assert abs(same["density"] - 6 / 5) < 0.01
    fresh = prdc(real, rng.normal(size=(300, 8)), k=5)                    # same distribution, new draw
    assert min(fresh["precision"], fresh["recall"], fresh["coverage"]) > 0.6 and 0.5 < fresh["density"] < 1.5
    far = prdc(real, rng.normal(size=(300, 8)) + 100.0, k=5, chunk=64)    # chunking must not matter
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_hand_computed():
    from dualat.metrics import prdc
    # 1-D, k=1: real {0, 1, 3} radii {1, 1, 2}; fake {0.5, 10} radii {9.5, 9.5}
    real, fake = np.array([[0.0], [1.0], [3.0]]), np.array([[0.5], [10.0]])
    r = prdc(real, fake, k=1)
    assert r["precision"] == 0.5                   # 0.5 lies in the balls of 0 and 1; 10 in none
    assert r["density"] == (2 + 0) / 1 / 2         # balls holding each fake, / k, averaged
    assert r["coverage"] == 2 / 3                  # balls of 0 and 1 hold a fake; that of 3 does not
    assert r["recall"] == 1.0                      # every real lies in the 0.5-ball of radius 9.5


def test_ece_hand_computed():
    from dualat.metrics import expected_calibration_error
    conf = np.array([0.95, 0.95, 0.55, 0.55, 0.55, 0.55])
    hit = np.array([1, 0, 1, 1, 0, 0], dtype=bool)
    # bin (0.9, 1]: acc 0.5 vs conf 0.95 -> 0.45 * 2/6; bin (0.5, 0.6]: 0.5 vs 0.55 -> 0.05 * 4/6
    ece, bins = expected_calibration_error(conf, hit, n_bins=10)
    assert abs(ece - (0.45 * 2 / 6 + 0.05 * 4 / 6)) < 1e-12
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 4, 0, 0, 0, 2]
    # a bin's upper edge belongs to it: 0.6 goes to (0.5, 0.6] with 15 bins -> (8/15, 9/15]
    _, bins15 = expected_calibration_error(np.array([0.6, 1.0]), np.array([True, True]), n_bins=15)
    assert bins15[8]["count"] == 1 and bins15[14]["count"] == 1
    assert expected_calibration_error(np.ones(4), np.ones(4, dtype=bool))[0] == 0.0


def test_auroc_matches_pair_counting():
    rng = np.random.default_rng(1)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 5, 30).astype(float)  # many ties
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert abs(auroc(torch.tensor(pos), torch.tensor(neg)) - pairs) < 1e-12


def test_stats_roundtrip(tmp_path):
    from dualat.metrics import load_stats, save_stats
    mu, sigma = np.arange(3.0), np.eye(3) * 2
    save_stats(tmp_path / "s.npz", mu, sigma, extractor="evalnet", n=10)
    m, s, meta = load_stats(tmp_path / "s.npz")
    assert np.array_equal(m, mu) and np.array_equal(s, sigma) and meta == {"extractor": "evalnet", "n": "10"}
    with np.load(tmp_path / "s.npz") as f:          # what pytorch-fid reads
        assert f["mu"].shape == (3,) and f["sigma"].shape == (3, 3)
