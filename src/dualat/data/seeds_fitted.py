"""Seed families fitted to the training set, one distribution per class (JEM++ style), the
ladder of issue 27: how much of the samples' quality is the seed model's, how much DAT's.

    gaussian            full covariance, drawn through the Cholesky factor of cov + 1e-4 I;
                        diagonal when d > 4096 or all factors would exceed 2 GiB
    gaussian_lowrank:K  probabilistic PCA: the K leading principal directions of each class and
                        an isotropic residual for the rest of the variance (default K = 16)
    gaussian_diag       a mean and a standard deviation per pixel
    gaussian_coarse:S   a full-covariance Gaussian of the images average-pooled to S x S (default
                        7), drawn at S x S and upsampled bilinearly to the data's size

Every family is class-conditional (`y` picks the class; y=None draws classes uniformly among
those with training items), returns float32 (n, *shape) clipped to [0, 1], and is a pure function
of the caller's generator. The "train" split draws from that generator directly, the held-out
"test" split from a private stream seeded by one draw of it mixed with (seed, 2), so training
and sampling never share a draw. `numbers` is the count of fitted numbers (means and covariance
parameters, all classes), the size of the seed model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DualatError
from .seeds import SeedSource, check_split
from .stream import mix_seeds

FITTED_SOURCES = ["gaussian", "gaussian_lowrank", "gaussian_diag", "gaussian_coarse"]
FITTED_DEFAULTS = {"gaussian_lowrank": 16, "gaussian_coarse": 7}   # K and S when the name gives none
FULL_COV_MAX_DIM = 4096
FULL_COV_MAX_BYTES = 2 << 30  # all classes' Cholesky factors together, float32
TEST_STREAM = 2               # the held-out split's stream tag (NoiseSource uses 1 / 2 the same way)


def _cholesky(cov: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    for jitter in (1e-4, 1e-3, 1e-2):  # more only if rounding left cov indefinite
        L, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if int(info) == 0:
            return L
    raise DualatError("gaussian seeds: a class covariance is not positive definite even with "
                      "jitter 1e-2; use data.seeds=gaussian_diag or patches")


def _covariance(xc: torch.Tensor) -> torch.Tensor:
    """float64 (d, d) covariance of centred rows xc (n, d)."""
    return (xc.T @ xc).double() / max(len(xc) - 1, 1)


class FittedSource(SeedSource):
    """Base class: fit per class in `__init__` (through `fit`), draw through `transform`.

    Subclasses set `kind`, `z_dim` (the standard-normal numbers one draw takes) and implement
    fit(c, x) for the flattened float32 (n_c, d) images of class c (whose mean is already in
    self.means[c]), and transform(c, z) -> (m, d)."""

    kind = "fitted"

    def __init__(self, shape: tuple, split: str = "train", train_set=None, seed: int = 0):
        super().__init__(shape, split)
        if train_set is None:
            raise DualatError(f"data.seeds={self.kind} fits a distribution per class to the training set, "
                              "but no training set was given (internal: pass train_set=)")
        if tuple(train_set.shape) != self.shape:
            raise DualatError(f"{self.kind} seeds: training set shape {tuple(train_set.shape)} differs from the "
                              f"requested seed shape {self.shape}")
        self.seed = int(seed)
        self.d = 1
        for s in self.shape:
            self.d *= s
        k = train_set.num_classes
        self.prepare(k)
        self.means = torch.zeros(k, self.d)
        fitted = []
        y = torch.as_tensor(train_set.y)
        for c in range(k):
            idx = (y == c).nonzero().view(-1)
            if len(idx) == 0:
                continue
            x = train_set.batch(idx)[0].reshape(len(idx), self.d).float()
            self.means[c] = x.mean(0)
            self.fit(c, x)
            fitted.append(c)
        if not fitted:
            raise DualatError(f"{self.kind} seeds: the training set is empty")
        self.present = torch.tensor(fitted, dtype=torch.int64)

    def prepare(self, num_classes: int) -> None:
        """Set-up before the classes are fitted (sizes that depend on the class count)."""

    def fit(self, c: int, x: torch.Tensor) -> None:
        raise NotImplementedError

    def transform(self, c: int, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def numbers(self) -> int:
        raise NotImplementedError

    def sample(self, n, y, generator):
        if y is None:
            y = self.present[torch.randint(0, len(self.present), (n,), generator=generator)]
        else:
            y = torch.as_tensor(y, dtype=torch.int64).cpu()
            if y.shape != (n,):
                raise DualatError(f"{self.kind} seeds: y must have shape ({n},), got {tuple(y.shape)}")
        g = generator
        if self.split == "test":
            draw = int(torch.randint(0, 2**62, (1,), generator=generator))
            g = torch.Generator().manual_seed(mix_seeds(draw, self.seed, TEST_STREAM))
        z = torch.randn(n, self.z_dim, generator=g)
        out = torch.empty(n, self.d)
        present = set(self.present.tolist())
        for c in y.unique().tolist():
            if c not in present:
                raise DualatError(f"{self.kind} seeds: class {c} has no training items to fit a distribution to")
            m = y == c
            out[m] = self.transform(c, z[m])
        return out.clamp_(0.0, 1.0).view(n, *self.shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, split={self.split!r}, numbers={self.numbers})"


class GaussianSource(FittedSource):
    """Full covariance per class (diagonal where d or the factors' memory is too large; `full` says)."""

    kind = "gaussian"

    def prepare(self, num_classes):
        self.full = self.d <= FULL_COV_MAX_DIM and num_classes * self.d * self.d * 4 <= FULL_COV_MAX_BYTES
        self.z_dim = self.d
        self.factors: dict[int, torch.Tensor] = {}  # class -> (d, d) Cholesky factor or (d,) std

    def fit(self, c, x):
        xc = x - self.means[c]
        if self.full:
            self.factors[c] = _cholesky(_covariance(xc)).float()
        else:
            self.factors[c] = (xc.pow(2).sum(0) / max(len(x) - 1, 1) + 1e-4).sqrt()

    def transform(self, c, z):
        f = self.factors[c]
        return self.means[c] + (z @ f.T if self.full else z * f)

    @property
    def numbers(self):
        per = self.d + (self.d * (self.d + 1) // 2 if self.full else self.d)
        return per * len(self.present)


class DiagonalGaussianSource(GaussianSource):
    """A mean and a standard deviation per pixel and class."""

    kind = "gaussian_diag"

    def prepare(self, num_classes):
        super().prepare(num_classes)
        self.full = False


class LowRankGaussianSource(FittedSource):
    """Probabilistic PCA per class: x = mean + W z1 + sigma z2, W = U_K (Lambda_K - sigma^2)^(1/2)
    from the K leading eigenpairs of the class covariance, sigma^2 = the mean of the remaining
    eigenvalues (Tipping & Bishop 1999)."""

    kind = "gaussian_lowrank"

    def __init__(self, shape, split="train", train_set=None, seed=0, rank: int = 16):
        self.rank = int(rank)
        super().__init__(shape, split, train_set, seed)

    def prepare(self, num_classes):
        if not 1 <= self.rank < self.d:
            raise DualatError(f"data.seeds=gaussian_lowrank:{self.rank}: the rank must be between 1 and "
                              f"{self.d - 1} (the input has {self.d} values)")
        if self.d > FULL_COV_MAX_DIM:
            raise DualatError(f"data.seeds=gaussian_lowrank fits {self.d}-value inputs' covariances, over the "
                              f"{FULL_COV_MAX_DIM} it handles; use gaussian_diag or gaussian_coarse")
        self.z_dim = self.rank + self.d
        self.W: dict[int, torch.Tensor] = {}
        self.sigma: dict[int, float] = {}

    def fit(self, c, x):
        evals, evecs = torch.linalg.eigh(_covariance(x - self.means[c]))   # ascending
        lead, rest = evals[-self.rank:].flip(0), evals[:-self.rank]
        s2 = max(float(rest.clamp(min=0).mean()), 1e-8)
        self.W[c] = (evecs[:, -self.rank:].flip(1) * (lead - s2).clamp(min=0).sqrt()).float()
        self.sigma[c] = s2 ** 0.5

    def transform(self, c, z):
        return self.means[c] + z[:, :self.rank] @ self.W[c].T + self.sigma[c] * z[:, self.rank:]

    @property
    def numbers(self):
        return (self.d + self.rank * self.d + 1) * len(self.present)


class CoarseGaussianSource(FittedSource):
    """A full-covariance Gaussian of the images average-pooled to side x side, upsampled bilinearly."""

    kind = "gaussian_coarse"

    def __init__(self, shape, split="train", train_set=None, seed=0, side: int = 7):
        if len(shape) != 3:
            raise DualatError(f"data.seeds=gaussian_coarse pools images, but the data are points of shape "
                              f"{tuple(shape)}; use gaussian or gaussian_diag")
        self.side = int(side)
        if not 1 <= self.side <= min(shape[1:]):
            raise DualatError(f"data.seeds=gaussian_coarse:{self.side}: the side must be between 1 and the "
                              f"image side {min(shape[1:])}")
        self.small = (shape[0], self.side, self.side)
        self.d_small = shape[0] * self.side * self.side
        super().__init__(shape, split, train_set, seed)

    def prepare(self, num_classes):
        if self.d_small > FULL_COV_MAX_DIM:
            raise DualatError(f"data.seeds=gaussian_coarse:{self.side} has {self.d_small} values per image, over "
                              f"{FULL_COV_MAX_DIM}; choose a smaller side")
        self.z_dim = self.d_small
        self.small_means: dict[int, torch.Tensor] = {}
        self.factors: dict[int, torch.Tensor] = {}

    def fit(self, c, x):
        pooled = F.adaptive_avg_pool2d(x.view(len(x), *self.shape), self.side).reshape(len(x), self.d_small)
        mu = pooled.mean(0)
        self.small_means[c] = mu
        self.factors[c] = _cholesky(_covariance(pooled - mu)).float()

    def transform(self, c, z):
        small = (self.small_means[c] + z @ self.factors[c].T).view(len(z), *self.small)
        up = F.interpolate(small, size=tuple(self.shape[1:]), mode="bilinear", align_corners=False)
        return up.reshape(len(z), self.d)

    @property
    def numbers(self):
        return (self.d_small + self.d_small * (self.d_small + 1) // 2) * len(self.present)


def make_fitted_source(base: str, param, shape: tuple, split: str, train_set, seed: int = 0) -> SeedSource:
    """The fitted family `base` (FITTED_SOURCES) with its parameter (K or S; None = the default)."""
    check_split(split)
    if base == "gaussian":
        return GaussianSource(shape, split, train_set, seed)
    if base == "gaussian_diag":
        return DiagonalGaussianSource(shape, split, train_set, seed)
    if base == "gaussian_lowrank":
        return LowRankGaussianSource(shape, split, train_set, seed, param or FITTED_DEFAULTS[base])
    if base == "gaussian_coarse":
        return CoarseGaussianSource(shape, split, train_set, seed, param or FITTED_DEFAULTS[base])
    raise DualatError(f"unknown fitted seed family {base!r}; use one of {', '.join(FITTED_SOURCES)}")
