"""Seed sources: out-of-distribution inputs that PGD starts its contrastive samples from.

Every source's `sample(n, y, generator)` returns float32 (n, *shape) in [0, 1] on the CPU, and
is a pure function of the generator state (plus the source's fixed configuration). The "train"
and "test" splits of a source never share pixels (patches, folder) or random streams (noise),
so test-time sampling starts from seeds the model never saw.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..errors import DualatError
from .folder import IMAGE_EXTENSIONS, list_images, load_image
from .photos import TRAIN_FRACTION, CropSampler, Region, bundled_photos
from .stream import mix_seeds

# the gaussian family lives in seeds_fitted.py (gaussian_lowrank:K and gaussian_coarse:S take a
# number), the last four in seeds_extra.py (mix also takes a fraction, mix:F; mixture a list, mixture:A+B)
SEED_SOURCES = ["patches", "folder", "noise", "gaussian", "gaussian_lowrank", "gaussian_diag", "gaussian_coarse",
                "patches_jitter", "photos_more", "mix", "mixture"]
_REGIONS: dict[tuple[int, str], list[Region]] = {}


def check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise DualatError(f"seed split must be 'train' or 'test', got {split!r}")


def image_shape(shape: tuple, kind: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise DualatError(f"seed source {kind!r} crops images but the data are points of shape {tuple(shape)}; "
                          f"set data.seeds=noise (or gaussian)")
    if shape[0] not in (1, 3):
        raise DualatError(f"seed source {kind!r} makes 1- or 3-channel images, the data have {shape[0]} "
                          f"channels; set data.seeds=noise (or gaussian)")
    return tuple(int(s) for s in shape)


class SeedSource:
    """Base class: `sample(n, y, generator) -> float32 (n, *shape) in [0, 1]`."""

    kind = "base"

    def __init__(self, shape: tuple, split: str = "train"):
        check_split(split)
        self.shape = tuple(int(s) for s in shape)
        self.split = split

    def sample(self, n: int, y: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, split={self.split!r})"


class PatchSource(SeedSource):
    """Random crops of the photos bundled with scikit-image / scikit-learn (see photos.py).

    Train seeds come from the top 80% of each photo's rows, test seeds from the bottom 20%.
    `regions` lists (photo name, first row, end row) of what this split may use.
    `photos` replaces the bundled set (name, uint8 (C, H, W)); used by tests.
    """

    kind = "patches"

    def __init__(self, shape: tuple, split: str = "train", photos: list | None = None):
        super().__init__(image_shape(shape, self.kind), split)
        frac = (0.0, TRAIN_FRACTION) if split == "train" else (TRAIN_FRACTION, 1.0)
        if photos is None:
            key = (self.shape[0], split)
            if key not in _REGIONS:
                _REGIONS[key] = [Region(n, img, frac) for n, img in bundled_photos(self.shape[0])]
            regions = _REGIONS[key]
            if not regions:
                raise DualatError("no bundled photos found in the installed scikit-image/scikit-learn "
                                  "(reinstall them with pip) or set data.seeds=noise or data.seeds=folder")
        else:
            regions = [Region(n, img, frac) for n, img in photos]
        self.sampler = CropSampler(regions, self.shape)

    @property
    def regions(self) -> list[tuple[str, int, int]]:
        return [(r.name, r.row0, r.row1) for r in self.sampler.regions]

    def sample(self, n, y, generator):
        return self.sampler.sample(n, generator)


def _split_of(rel: str) -> str:
    """Stable train/test assignment of a file from its relative path (~10% test)."""
    return "test" if hashlib.md5(rel.encode("utf-8")).digest()[0] % 10 == 0 else "train"


class FolderSource(SeedSource):
    """Random crops of the images anywhere under a user folder (decoded lazily, 128 kept).

    Files go to train or test by a hash of their relative path (~90/10). When that leaves a
    split without files (small folders), every file is split by rows as for `patches` instead.
    """

    kind = "folder"

    def __init__(self, shape: tuple, split: str = "train", folder: str | None = None):
        super().__init__(image_shape(shape, self.kind), split)
        if folder is None:
            raise DualatError("data.seeds=folder needs data.seed_folder=DIR, a folder of images")
        root = Path(folder)
        if not root.is_dir():
            raise DualatError(f"seed folder {root} does not exist; set data.seed_folder to a folder of images")
        files = list_images(root, recursive=True)
        if not files:
            raise DualatError(f"seed folder {root} contains no images ({', '.join(IMAGE_EXTENSIONS)}); "
                              f"add images or set data.seeds=patches")
        rels = [f.relative_to(root).as_posix() for f in files]
        chosen = [f for f, r in zip(files, rels) if _split_of(r) == split]
        other = len(files) - len(chosen)
        c = self.shape[0]
        if chosen and other:
            regions = [Region(f.name, (lambda p=f: load_image(p, c))) for f in chosen]
        else:
            frac = (0.0, TRAIN_FRACTION) if split == "train" else (TRAIN_FRACTION, 1.0)
            regions = [Region(f.name, (lambda p=f: load_image(p, c)), frac) for f in files]
        self.root = root
        self.files = chosen if chosen and other else files
        self.sampler = CropSampler(regions, self.shape, cache=128)

    def sample(self, n, y, generator):
        return self.sampler.sample(n, generator)


class NoiseSource(SeedSource):
    """Uniform noise in [0, 1] (any shape, also toy2d's (2,)).

    The noise comes from a private generator seeded by one draw from `generator` mixed with
    (seed, split), so the same caller generator gives different train and test seeds.
    """

    kind = "noise"

    def __init__(self, shape: tuple, split: str = "train", seed: int = 0):
        super().__init__(shape, split)
        self.seed = int(seed)

    def sample(self, n, y, generator):
        draw = int(torch.randint(0, 2**62, (1,), generator=generator))
        g = torch.Generator().manual_seed(mix_seeds(draw, self.seed, 1 if self.split == "train" else 2))
        return torch.rand(n, *self.shape, generator=g)
