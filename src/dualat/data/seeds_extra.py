"""More seed sources (issue 15): jittered multi-scale patches, more bundled natural images, and a
mixture of patches with the per-class Gaussian. Built through seeds.make_seed_source by name.

    patches_jitter   crops of the bundled photos at 5%..100% of the shorter side (same train /
                     test rows as `patches`), then per image a random gamma, contrast, brightness
                     and, 1 time in 5, a negative
    photos_more      the bundled photos plus microaneurysms.png and the 200 small images of
                     scikit-image's lfw_subset.npy (100 faces, 100 non-faces), both shipped in the
                     scikit-image wheel; photos split by rows as `patches`, the small images by
                     index (every 5th is held out)
    mix, mix:F       each seed is a per-class Gaussian seed with probability F (default 0.5),
                     otherwise a `patches` seed (Santurkar et al. style Gaussian + natural crops)
    mixture:A+B[+C]  each seed comes from one of the named sources (any but folder and mixture),
                     chosen uniformly per seed, e.g. mixture:gaussian+gaussian_coarse:7

Every source returns float32 (n, *shape) in [0, 1] and is a pure function of the generator state;
the "train" and "test" splits never share source pixels (rows of a photo, or whole images) and
the Gaussian part of `mix` draws from a split-specific random stream.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import DualatError
from .folder import load_image
from .photos import TRAIN_FRACTION, CropSampler, Region, bundled_photos
from .seeds import SEED_SOURCES, FolderSource, NoiseSource, PatchSource, SeedSource, check_split, image_shape
from .seeds_fitted import FITTED_DEFAULTS, FITTED_SOURCES, GaussianSource, make_fitted_source
from .stream import mix_seeds

EXTRA_SOURCES = ["patches_jitter", "photos_more", "mix", "mixture"]
NAME_FORMS = ["mix:F", "gaussian_lowrank:K", "gaussian_coarse:S", "mixture:A+B"]   # the names that take a parameter
MIXTURE_EXAMPLE = "mixture:gaussian+gaussian_coarse:7"
MIX_DEFAULT = 0.5
JITTER_SCALE = (0.05, 1.0)   # crop side as a fraction of the photo's shorter side
GAMMA_RANGE = 2.0            # gamma log-uniform in [1/2, 2]
CONTRAST_RANGE = (0.6, 1.4)  # around each image's mean
BRIGHTNESS = 0.15            # shift uniform in [-0.15, 0.15]
NEGATIVE_PROB = 0.2
SMALL_TEST_EVERY = 5         # photos_more: small image i is held out when i % 5 == 4
SMALL_WEIGHT = 4.0           # the small images together are drawn as often as 4 photos
EXTRA_PHOTOS = ("microaneurysms.png",)


def parse_seed_name(kind: str) -> tuple[str, float | int | tuple | None]:
    """'mix:0.3' -> ('mix', 0.3), 'mix' -> ('mix', 0.5), 'gaussian_lowrank:8' -> ('gaussian_lowrank', 8),
    'gaussian_coarse' -> ('gaussian_coarse', 7), 'mixture:gaussian+noise' -> ('mixture', ('gaussian',
    'noise')), other names -> (name, None); bad -> DualatError."""
    if not isinstance(kind, str):
        raise DualatError(f"seed source must be a name, got {kind!r}")
    if kind == "mixture" or kind.startswith("mixture:"):
        return "mixture", mixture_parts(kind)
    if kind == "mix" or kind.startswith("mix:"):
        text = kind[4:] if kind.startswith("mix:") else str(MIX_DEFAULT)
        try:
            f = float(text)
        except ValueError:
            f = math.nan
        if not 0.0 <= f <= 1.0:
            raise DualatError(f"seed source {kind!r}: the Gaussian fraction after 'mix:' must be a number in "
                              f"[0, 1], e.g. mix:0.5")
        return "mix", f
    base, _, text = kind.partition(":")
    if base in FITTED_DEFAULTS:
        what = "rank K" if base == "gaussian_lowrank" else "side S"
        if not text:
            return base, FITTED_DEFAULTS[base]
        if not text.isdigit() or int(text) < 1:
            raise DualatError(f"seed source {kind!r}: the {what} after '{base}:' must be a whole number >= 1, "
                              f"e.g. {base}:{FITTED_DEFAULTS[base]}")
        return base, int(text)
    return kind, None


def mixture_parts(kind: str) -> tuple[str, ...]:
    """'mixture:gaussian+gaussian_coarse:7' -> ('gaussian', 'gaussian_coarse:7'); a bad list -> DualatError."""
    parts = tuple(kind[len("mixture:"):].split("+")) if kind.startswith("mixture:") else ()
    if len(parts) < 2 or len(set(parts)) < len(parts):
        raise DualatError(f"seed source {kind!r}: name two or more different sources after 'mixture:', joined "
                          f"by '+', e.g. {MIXTURE_EXAMPLE}")
    for part in parts:
        base = part.partition(":")[0] if part.startswith(("folder", "mixture")) else parse_seed_name(part)[0]
        if base in ("folder", "mixture") or base not in SEED_SOURCES:
            raise DualatError(f"seed source {kind!r}: {part!r} cannot be part of a mixture; use sources such as "
                              f"{', '.join(s for s in SEED_SOURCES if s not in ('folder', 'mixture'))}")
    return parts


def check_seed_name(kind) -> str:
    """The name if it names a seed source (SEED_SOURCES, mix:F, mixture:A+B or folder:DIR), else one error line."""
    if isinstance(kind, str) and kind.startswith("folder:") and len(kind) > len("folder:"):
        return kind
    if parse_seed_name(kind)[0] not in SEED_SOURCES:
        raise DualatError(f"unknown seed source {kind!r}; use one of {', '.join(SEED_SOURCES + NAME_FORMS)} "
                          "or folder:DIR")
    return kind


def needs_train_set(kind: str) -> bool:
    """Whether the source is fitted to the training set (the gaussian family, mix, a mixture with one)."""
    if isinstance(kind, str) and kind.startswith("mixture:"):
        return any(needs_train_set(part) for part in mixture_parts(kind))
    return isinstance(kind, str) and kind.partition(":")[0] in FITTED_SOURCES + ["mix"]


class JitterPatchSource(PatchSource):
    """`patches` at more scales, then per-image gamma / contrast / brightness / negative jitter."""

    kind = "patches_jitter"

    def __init__(self, shape: tuple, split: str = "train", photos: list | None = None):
        super().__init__(shape, split, photos)
        self.sampler.scale = JITTER_SCALE

    def draw_jitter(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """float64 (n, 4): gamma, contrast, brightness shift, negative (0/1)."""
        u = torch.rand(n, 4, generator=generator, dtype=torch.float64)
        gamma = torch.exp((2 * u[:, 0] - 1) * math.log(GAMMA_RANGE))
        lo, hi = CONTRAST_RANGE
        return torch.stack([gamma, lo + (hi - lo) * u[:, 1], (2 * u[:, 2] - 1) * BRIGHTNESS,
                            (u[:, 3] < NEGATIVE_PROB).double()], 1)

    @staticmethod
    def apply_jitter(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """x (n, C, H, W) in [0, 1], params from draw_jitter -> jittered float32 in [0, 1]."""
        p = params.float().view(-1, 4, *([1] * (x.dim() - 1)))
        y = x.clamp(0, 1).pow(p[:, 0])
        mean = y.mean(dim=tuple(range(1, x.dim())), keepdim=True)
        y = (y - mean) * p[:, 1] + mean + p[:, 2]
        y = torch.where(p[:, 3] > 0.5, 1 - y, y)
        return y.clamp_(0.0, 1.0)

    def sample(self, n, y, generator):
        boxes = self.sampler.draw_boxes(n, generator)
        params = self.draw_jitter(n, generator)
        return self.apply_jitter(self.sampler.render(boxes), params)


def _small_images(channels: int) -> list[tuple[str, torch.Tensor]]:
    """(name, uint8 (channels, 25, 25)) of skimage's lfw_subset.npy (read from the wheel's file)."""
    import numpy as np
    try:
        import skimage.data
        arr = np.load(Path(skimage.data.__file__).parent / "lfw_subset.npy")
    except Exception:
        return []
    t = torch.from_numpy((arr * 255).round().clip(0, 255).astype("uint8"))[:, None]
    return [(f"lfw_subset[{i}]", t[i].expand(channels, -1, -1).contiguous()) for i in range(len(t))]


def _extra_photos(channels: int) -> list[tuple[str, torch.Tensor]]:
    out = []
    try:
        import skimage.data
        base = Path(skimage.data.__file__).parent
    except Exception:
        return out
    for f in EXTRA_PHOTOS:
        try:
            out.append((Path(f).stem, load_image(base / f, channels)))
        except Exception:
            continue
    return out


class MorePhotosSource(SeedSource):
    """Crops of the bundled photos + EXTRA_PHOTOS (rows split as `patches`) and whole small images
    (lfw_subset, split by index). `photos` / `small` replace the two sets (tests)."""

    kind = "photos_more"

    def __init__(self, shape: tuple, split: str = "train", photos: list | None = None, small: list | None = None):
        super().__init__(image_shape(shape, self.kind), split)
        c = self.shape[0]
        frac = (0.0, TRAIN_FRACTION) if split == "train" else (TRAIN_FRACTION, 1.0)
        photos = photos if photos is not None else bundled_photos(c) + _extra_photos(c)
        small = small if small is not None else _small_images(c)
        held = SMALL_TEST_EVERY - 1
        small = [(n, img) for i, (n, img) in enumerate(small) if (i % SMALL_TEST_EVERY == held) == (split == "test")]
        if not photos and not small:
            raise DualatError("data.seeds=photos_more found no images in the installed scikit-image/scikit-learn "
                              "(reinstall them with pip) or set data.seeds=noise")
        regions = [Region(n, img, frac) for n, img in photos]
        regions += [Region(n, img, (0.0, 1.0), scale=(0.6, 1.0)) for n, img in small]
        weights = [1.0] * len(photos) + ([SMALL_WEIGHT / len(small)] * len(small) if small else [])
        self.sampler = CropSampler(regions, self.shape, weights=weights)

    @property
    def regions(self) -> list[tuple[str, int, int]]:
        return [(r.name, r.row0, r.row1) for r in self.sampler.regions]

    def sample(self, n, y, generator):
        return self.sampler.sample(n, generator)


class MixSource(SeedSource):
    """Per-class Gaussian seeds with probability `fraction`, `patches` seeds otherwise.

    Which seeds are Gaussian and the patches come from `generator`; the Gaussian draws from a
    private generator seeded by one draw of `generator` mixed with (seed, split)."""

    kind = "mix"

    def __init__(self, shape: tuple, split: str = "train", train_set=None, fraction: float = MIX_DEFAULT,
                 seed: int = 0, photos: list | None = None):
        super().__init__(image_shape(shape, self.kind), split)
        self.fraction, self.seed = float(fraction), int(seed)
        self.patches = PatchSource(shape, split, photos)
        self.gaussian = GaussianSource(shape, "train", train_set)  # drawn from mix's split-specific stream

    def sample(self, n, y, generator):
        gauss = torch.rand(n, generator=generator, dtype=torch.float64) < self.fraction
        draw = int(torch.randint(0, 2**62, (1,), generator=generator))
        out = torch.empty(n, *self.shape)
        k = int(gauss.sum())
        if k < n:
            out[~gauss] = self.patches.sample(n - k, None, generator)
        if k:
            g = torch.Generator().manual_seed(mix_seeds(draw, self.seed, 1 if self.split == "train" else 2))
            yk = None if y is None else torch.as_tensor(y, dtype=torch.int64).cpu()[gauss]
            out[gauss] = self.gaussian.sample(k, yk, g)
        return out

    def __repr__(self) -> str:
        return f"MixSource(shape={self.shape}, split={self.split!r}, fraction={self.fraction})"


class MixtureSource(SeedSource):
    """Each seed from one of `parts` (seed sources of the same split), chosen uniformly per seed by
    `generator`; every part then draws its own seeds (with their labels) from the same generator,
    so the mixture is a pure function of the generator state, class-conditional where its parts
    are, and its splits are disjoint where its parts' are."""

    kind = "mixture"

    def __init__(self, shape: tuple, split: str, parts: list[SeedSource]):
        super().__init__(shape, split)
        self.parts = list(parts)

    def sample(self, n, y, generator):
        which = torch.randint(0, len(self.parts), (n,), generator=generator)
        labels = None if y is None else torch.as_tensor(y, dtype=torch.int64).cpu()
        out = torch.empty(n, *self.shape)
        for i, part in enumerate(self.parts):
            idx = (which == i).nonzero().view(-1)
            if len(idx):
                out[idx] = part.sample(len(idx), None if labels is None else labels[idx], generator)
        return out

    def __repr__(self) -> str:
        return f"MixtureSource(shape={self.shape}, split={self.split!r}, parts={self.parts!r})"


def make_extra_source(kind: str, shape: tuple, split: str, train_set=None, seed: int = 0) -> SeedSource | None:
    """The source named `kind` if it is one of EXTRA_SOURCES (mix:F and mixture:A+B included), else None."""
    base, param = parse_seed_name(kind)
    if base == "mixture":
        return MixtureSource(shape, split, [make_seed_source(part, shape, split, train_set, None, seed)
                                            for part in param])
    if base == "patches_jitter":
        return JitterPatchSource(shape, split)
    if base == "photos_more":
        return MorePhotosSource(shape, split)
    if base == "mix":
        if train_set is None:
            raise DualatError("data.seeds=mix fits a Gaussian per class to the training set, "
                              "but no training set was given (internal: pass train_set=)")
        return MixSource(shape, split, train_set, param, seed)
    return None


def make_seed_source(kind: str, shape: tuple, split: str = "train", train_set=None,
                     folder: str | None = None, seed: int = 0) -> SeedSource:
    """Build a seed source by name (SEED_SOURCES, mix:F, gaussian_lowrank:K, gaussian_coarse:S).
    `seed` only offsets the random streams of noise, of the fitted families' held-out split and of
    mix's Gaussian part; `train_set` is needed by the gaussian family and mix, `folder` by folder."""
    check_split(split)
    if kind == "patches":
        return PatchSource(shape, split)
    if kind == "folder":
        return FolderSource(shape, split, folder)
    if kind == "noise":
        return NoiseSource(shape, split, seed)
    base, param = parse_seed_name(kind)
    if base in FITTED_SOURCES:
        return make_fitted_source(base, param, shape, split, train_set, seed)
    extra = make_extra_source(kind, shape, split, train_set, seed)
    if extra is not None:
        return extra
    raise DualatError(f"unknown seed source {kind!r}; set data.seeds to one of {', '.join(SEED_SOURCES)}")
