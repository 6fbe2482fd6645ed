"""Natural photos bundled with scikit-image / scikit-learn, and random-crop patch rendering.

Photos are read straight from the files inside the installed packages (never through
skimage.data's fetchers, which may try to download), so nothing here touches the network.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .folder import load_image

# Files shipped inside the scikit-image wheel (skimage/data/). Synthetic or binary images
# (chessboards, logo, horse, phantom, colour wheel) are left out: the seeds should look like photos.
SKIMAGE_PHOTOS = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png",
                  "clock_motion.png", "coffee.png", "coins.png", "grass.png", "gravel.png",
                  "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png", "page.png",
                  "retina.jpg", "rocket.jpg", "text.png")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")  # sklearn.datasets.load_sample_images()
TRAIN_FRACTION = 0.8  # top 80% of each photo's rows feed training seeds, the rest test seeds

_PHOTOS: dict[int, list[tuple[str, torch.Tensor]]] = {}


def _photo_paths() -> list[Path]:
    paths = []
    try:
        import skimage.data
        base = Path(skimage.data.__file__).parent
        paths += [base / f for f in SKIMAGE_PHOTOS]
    except Exception:
        pass
    try:
        import sklearn.datasets
        base = Path(sklearn.datasets.__file__).parent / "images"
        paths += [base / f for f in SKLEARN_PHOTOS]
    except Exception:
        pass
    return paths


def bundled_photos(channels: int) -> list[tuple[str, torch.Tensor]]:
    """(name, uint8 (channels, H, W)) for every bundled photo found; loaded once per channel count.

    A photo that is missing or unreadable in this installation is skipped.
    """
    if channels not in _PHOTOS:
        out = []
        for p in _photo_paths():
            if not p.is_file():
                continue
            try:
                out.append((p.stem, load_image(p, channels)))
            except Exception:
                continue
        _PHOTOS[channels] = out
    return _PHOTOS[channels]


def build_pyramid(img: torch.Tensor, min_side: int = 8) -> list[torch.Tensor]:
    """uint8 (C, H, W) -> [img, img/2, img/4, ...] (2x2 box-averaged, uint8) while the shorter
    side stays >= min_side. Cropping from the level nearest the target size keeps every resize a
    small, cheap, antialiased downscale."""
    levels = [img]
    x = img.float()
    while min(x.shape[-2:]) // 2 >= min_side:
        x = F.avg_pool2d(x[None], 2)[0]
        levels.append(x.round().to(torch.uint8))
    return levels


class Region:
    """Rows [row0, row1) of one image, the only pixels a seed source may crop from.

    `load()` returns the region's pixels as uint8 (C, row1-row0, W); `short` is the shorter side
    of the whole image, which sets the crop scale.
    """

    def __init__(self, name: str, pixels: torch.Tensor | Callable[[], torch.Tensor],
                 frac: tuple[float, float] = (0.0, 1.0), scale: tuple[float, float] | None = None):
        self.name = name
        self.scale = scale  # crop side range as fractions of `short`; None = the sampler's
        self._src = pixels
        self.frac = frac
        self.row0 = self.row1 = self.short = None
        self._pyr = None
        if isinstance(pixels, torch.Tensor):
            self._pyr = self._cut(pixels)

    def _cut(self, img: torch.Tensor) -> list[torch.Tensor]:
        h, w = img.shape[-2:]
        self.short = min(h, w)
        self.row0, self.row1 = (round(h * self.frac[0]), round(h * self.frac[1]))
        return build_pyramid(img[:, self.row0:self.row1].contiguous())

    def pyramid(self) -> list[torch.Tensor]:
        if self._pyr is not None:
            return self._pyr
        return self._cut(self._src())


class CropSampler:
    """Random square-ish crops of regions resized to (C, H, W) float32 in [0, 1].

    Crop side: uniform between max(10% of the image's shorter side, target side) and 50% of it,
    capped by the region; left-right flipped with probability 1/2. Region choice is uniform.
    `cache` > 0 keeps that many decoded lazy regions (folders); eager regions stay resident.
    `scale` = (lo, hi) replaces the 10% / 50% (a Region's own `scale` wins); `weights` (one per
    region) makes the region choice proportional to them instead of uniform.
    """

    def __init__(self, regions: list[Region], shape: tuple[int, int, int], cache: int = 0,
                 scale: tuple[float, float] = (0.1, 0.5), weights: list[float] | None = None):
        self.regions = regions
        self.shape = tuple(shape)
        self.scale = (float(scale[0]), float(scale[1]))
        self._cum = None
        if weights is not None:
            w = torch.tensor(weights, dtype=torch.float64)
            self._cum = w.cumsum(0) / w.sum()
        self._cache: OrderedDict[int, list[torch.Tensor]] = OrderedDict()
        self._cache_size = cache

    def _pyramid(self, i: int) -> list[torch.Tensor]:
        r = self.regions[i]
        if r._pyr is not None or self._cache_size <= 0:
            return r.pyramid()
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        pyr = self._cache[i] = r.pyramid()
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return pyr

    def draw_boxes(self, n: int, g: torch.Generator) -> torch.Tensor:
        """int64 (n, 6): [region, top, left, height, width, flip], top/left within the region."""
        _, th, tw = self.shape
        u = torch.rand(n, 5, generator=g, dtype=torch.float64)
        out = torch.zeros(n, 6, dtype=torch.int64)
        for j in range(n):
            if self._cum is None:
                i = min(int(u[j, 0] * len(self.regions)), len(self.regions) - 1)
            else:
                i = min(int(torch.searchsorted(self._cum, u[j, 0], right=True)), len(self.regions) - 1)
            base = self._pyramid(i)[0]
            rh, rw = base.shape[-2:]
            short = self.regions[i].short
            lo_f, hi_f = self.regions[i].scale or self.scale
            hi = max(1.0, min(hi_f * short, rh, rw * th / tw))
            lo = min(max(lo_f * short, th), hi)
            ch = int(lo + float(u[j, 1]) * (hi - lo))
            cw = max(1, min(rw, round(ch * tw / th)))
            top = int(float(u[j, 2]) * (rh - ch + 1))
            left = int(float(u[j, 3]) * (rw - cw + 1))
            out[j] = torch.tensor([i, top, left, ch, cw, int(u[j, 4] < 0.5)])
        return out

    def render(self, boxes: torch.Tensor) -> torch.Tensor:
        """boxes from draw_boxes -> float32 (n, C, H, W) in [0, 1]."""
        c, th, tw = self.shape
        out = torch.empty(len(boxes), c, th, tw)
        for j, (i, top, left, ch, cw, flip) in enumerate(boxes.tolist()):
            pyr = self._pyramid(i)
            # coarsest level at which the crop still has at least the target's pixels
            k = max(0, min(len(pyr) - 1, int(math.floor(math.log2(max(1.0, min(ch / th, cw / tw)))))))
            s = 2 ** k
            lvl = pyr[k]
            t, l = top // s, left // s
            hk = max(1, min(lvl.shape[-2] - t, -(-ch // s)))
            wk = max(1, min(lvl.shape[-1] - l, -(-cw // s)))
            crop = lvl[:, t:t + hk, l:l + wk].float()[None] / 255.0
            if (hk, wk) != (th, tw):
                crop = F.interpolate(crop, size=(th, tw), mode="bilinear", align_corners=False,
                                     antialias=True)
            out[j] = crop[0].flip(-1) if flip else crop[0]
        return out.clamp_(0.0, 1.0)

    def sample(self, n: int, g: torch.Generator) -> torch.Tensor:
        return self.render(self.draw_boxes(n, g))
