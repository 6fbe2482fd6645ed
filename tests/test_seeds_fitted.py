"""The fitted seed families (data/seeds_fitted.py): shape, [0, 1], class-conditional draws,
held-out draws that never repeat the training ones, the size of each seed model, bad names."""
import pytest
import torch

from dualat.config import load_config
from dualat.data import load_dataset, make_seed_source
from dualat.data.seeds_fitted import (CoarseGaussianSource, DiagonalGaussianSource, GaussianSource,
                                      LowRankGaussianSource)
from dualat.errors import DualatError

FAMILIES = {"gaussian": GaussianSource, "gaussian_lowrank:4": LowRankGaussianSource,
            "gaussian_diag": DiagonalGaussianSource, "gaussian_coarse:4": CoarseGaussianSource}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_family_shape_range_classes_and_splits(kind, digits):
    tr = make_seed_source(kind, digits.shape, "train", train_set=digits)
    te = make_seed_source(kind, digits.shape, "test", train_set=digits)
    assert type(tr) is FAMILIES[kind] and tr.split == "train" and te.split == "test"
    y = torch.arange(10).repeat_interleave(50)
    x = tr.sample(len(y), y, gen(0))
    assert x.shape == (500, 1, 8, 8) and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1 and float(x.std()) > 0.05
    assert torch.equal(x, tr.sample(len(y), y, gen(0)))            # a pure function of the generator
    # class-conditional: the mean of each class's draws is nearest that class's real mean
    real = torch.stack([digits.batch((torch.as_tensor(digits.y) == c).nonzero().view(-1))[0].view(-1, 64).mean(0)
                        for c in range(10)])
    if kind.startswith("gaussian_coarse"):  # its means are the class means seen at 4 x 4
        small = torch.nn.functional.adaptive_avg_pool2d(real.view(10, 1, 8, 8), 4)
        real = torch.nn.functional.interpolate(small, size=(8, 8), mode="bilinear", align_corners=False).view(10, 64)
    assert torch.cdist(x.view(10, 50, 64).mean(1), real).argmin(1).tolist() == list(range(10))
    # held-out draws: a separate stream, so no held-out seed repeats a training seed
    xt = te.sample(len(y), y, gen(0))
    assert torch.cdist(xt.view(500, -1), x.view(500, -1)).min() > 1e-3
    assert torch.equal(xt, te.sample(len(y), y, gen(0)))
    assert te.sample(7, None, gen(3)).shape == (7, 1, 8, 8)       # y=None draws the classes


def test_family_sizes(digits):
    d, k = 64, 10
    sizes = {kind: make_seed_source(kind, digits.shape, train_set=digits).numbers for kind in FAMILIES}
    assert sizes == {"gaussian": k * (d + d * (d + 1) // 2), "gaussian_lowrank:4": k * (d + 4 * d + 1),
                     "gaussian_diag": k * 2 * d, "gaussian_coarse:4": k * (16 + 16 * 17 // 2)}


def test_full_gaussian_train_draws_are_unchanged(digits):
    """The training split draws exactly as the per-class Gaussian always did: mean + L z, clipped."""
    src = make_seed_source("gaussian", digits.shape, "train", train_set=digits)
    y = torch.tensor([3, 1, 3, 0])
    g = gen(4)
    z = torch.randn(4, 64, generator=g)
    want = torch.stack([src.means[c] + src.factors[c] @ z[i] for i, c in enumerate(y.tolist())]).clamp(0, 1)
    assert torch.allclose(src.sample(4, y, gen(4)).view(4, 64), want, atol=1e-5)


def test_lowrank_keeps_the_leading_variance(digits):
    """PPCA: the draws' total variance per class matches the data's (the residual carries the rest)."""
    src = make_seed_source("gaussian_lowrank:8", digits.shape, "train", train_set=digits)
    c = 2
    data = digits.batch((torch.as_tensor(digits.y) == c).nonzero().view(-1))[0].view(-1, 64)
    draws = src.transform(c, torch.randn(20000, src.z_dim, generator=gen(1)))  # before clipping
    assert draws.var(0).sum() == pytest.approx(float(data.var(0).sum()), rel=0.05)


def test_coarse_draws_are_smooth_upsampled_images():
    x = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8, generator=gen(5))
    from dualat.data import ImageSet
    ds = ImageSet(x, torch.arange(40) % 2, ["a", "b"])
    src = make_seed_source("gaussian_coarse", ds.shape, "test", train_set=ds)
    assert src.side == 7 and src.numbers == 2 * (49 + 49 * 50 // 2)
    s = src.sample(6, torch.tensor([0, 1, 0, 1, 0, 1]), gen(0))
    assert s.shape == (6, 1, 28, 28)
    # bilinear upsampling from 7x7: neighbouring pixels differ far less than in the noisy data
    assert (s[..., 1:] - s[..., :-1]).abs().mean() < 0.5 * (x.float()[..., 1:] - x.float()[..., :-1]).abs().mean() / 255


def test_fitted_names_are_validated(digits):
    for name in ("gaussian_lowrank", "gaussian_lowrank:8", "gaussian_diag", "gaussian_coarse", "gaussian_coarse:4"):
        assert load_config("fashion_mnist", [f"data.seeds={name}"]).data.seeds == name
    for bad, needle in (("gaussian_lowrank:0", "rank K.*whole number"), ("gaussian_coarse:x", "side S.*whole number"),
                        ("gaussian_diagonal", "did you mean gaussian_diag")):
        with pytest.raises(DualatError, match=needle):
            load_config("fashion_mnist", [f"data.seeds={bad}"])
    with pytest.raises(DualatError, match="rank must be between 1 and 63"):
        make_seed_source("gaussian_lowrank:64", digits.shape, train_set=digits)
    with pytest.raises(DualatError, match="side must be between 1 and the image side 8"):
        make_seed_source("gaussian_coarse:9", digits.shape, train_set=digits)
    with pytest.raises(DualatError, match="training set"):
        make_seed_source("gaussian_diag", digits.shape)


def test_mixture_draws_each_seed_from_one_part(digits):
    """mixture:A+B: a part chosen uniformly per seed, then each part's own class-conditional draws
    from the same generator; values in [0, 1]; held-out draws never repeat the training ones."""
    name = "mixture:gaussian+gaussian_coarse:4"
    tr = make_seed_source(name, digits.shape, "train", train_set=digits)
    te = make_seed_source(name, digits.shape, "test", train_set=digits)
    assert [type(p) for p in tr.parts] == [GaussianSource, CoarseGaussianSource] and te.split == "test"
    y = torch.arange(10).repeat_interleave(50)
    x = tr.sample(len(y), y, gen(0))
    assert x.shape == (500, 1, 8, 8) and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    g = gen(0)
    which = torch.randint(0, 2, (500,), generator=g)
    assert 200 < int(which.sum()) < 300                              # both parts used, about equally
    for i, part in enumerate(tr.parts):
        idx = (which == i).nonzero().view(-1)
        assert torch.equal(x[idx], part.sample(len(idx), y[idx], g))  # part i drew exactly these seeds
    real = torch.stack([digits.batch((torch.as_tensor(digits.y) == c).nonzero().view(-1))[0].view(-1, 64).mean(0)
                        for c in range(10)])
    assert torch.cdist(x.view(10, 50, 64).mean(1), real).argmin(1).tolist() == list(range(10))
    xt = te.sample(len(y), y, gen(0))
    assert torch.cdist(xt.view(500, -1), x.view(500, -1)).min() > 1e-3
    assert te.sample(7, None, gen(3)).shape == (7, 1, 8, 8)


def test_mixture_names_are_validated(digits):
    name = "mixture:gaussian+gaussian_coarse:7"
    assert load_config("fashion_mnist", [f"data.seeds={name}"]).data.seeds == name
    for bad, needle in (("mixture:gaussian", "two or more different sources"),
                        ("mixture:gaussian+gaussian", "two or more different sources"),
                        ("mixture:gaussian+folder:imgs", "'folder:imgs' cannot be part of a mixture"),
                        ("mixture:noise+mixture:gaussian+patches", "'mixture:gaussian' cannot be part"),
                        ("mixture:gaussian+gausian", "'gausian' cannot be part"),
                        ("mixture:gaussian+gaussian_lowrank:0", "rank K.*whole number")):
        with pytest.raises(DualatError, match=needle):
            load_config("fashion_mnist", [f"data.seeds={bad}"])
    with pytest.raises(DualatError, match="training set"):
        make_seed_source("mixture:noise+gaussian_diag", digits.shape)
