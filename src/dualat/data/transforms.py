"""Batched image augmentations on float (B, C, H, W) tensors in [0, 1].

Every random choice comes from the torch.Generator passed in (a CPU generator; the random
numbers are moved to the images' device), so a fixed generator state gives fixed outputs. All
functions return new tensors in [0, 1] with the input's shape.

`strong` is a RandAugment-style stand-in for the paper's CIFAR recipe (crop + flip +
AutoAugment + Cutout16), since torchvision is not used: two random ops per image from
{identity, brightness, contrast, colour, sharpness, posterize, solarize, autocontrast,
equalize, translate, rotate}, each at a random magnitude, then crop + flip + cutout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import DualatError

TRANSFORM_SPECS = ("none", "flip", "crop", "crop_flip", "strong")
_CROP_PAD = {32: 4, 28: 2, 8: 1}


def _rand(n: int, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g).to(device)


def crop_pad(size: int) -> int:
    """Padding for random crops: 4 at 32 px, 2 at 28 px, 1 at 8 px, else max(1, round(size / 8))."""
    return _CROP_PAD.get(size, max(1, round(size / 8)))


def random_crop(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Zero-pad by `pad` on each side, then take a random HxW window per image."""
    if pad <= 0:
        return x.clone()
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=g).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=g).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = ox[:, None] + torch.arange(w, device=x.device)  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    m = _rand(x.shape[0], g, x.device) < 0.5
    return torch.where(m[:, None, None, None], x.flip(-1), x)


def cutout(x: torch.Tensor, size: int, g: torch.Generator, fill: float = 0.5) -> torch.Tensor:
    """Paint one size x size square per image with `fill` (0.5 = mid grey, the [0, 1] analogue of
    zero after mean normalisation). The centre is uniform over the image, so squares may be clipped
    at the border as in DeVries & Taylor."""
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=g).to(x.device)
    cx = torch.randint(0, w, (b,), generator=g).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    top, left = cy[:, None] - size // 2, cx[:, None] - size // 2
    in_y = (ys >= top) & (ys < top + size)  # (B, H)
    in_x = (xs >= left) & (xs < left + size)  # (B, W)
    m = (in_y[:, :, None] & in_x[:, None, :])[:, None]
    return torch.where(m, torch.full_like(x, fill), x)


# ---- RandAugment-style ops: op(x, m, g) with m (B,) magnitudes in [0, 1] --------------------

def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        return (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


def _signed(m: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    sign = torch.where(_rand(m.shape[0], g, m.device) < 0.5, -1.0, 1.0)
    return (m * sign).view(-1, 1, 1, 1)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """b + factor * (a - b): factor 1 gives a, 0 gives b, >1 extrapolates (PIL ImageEnhance)."""
    return b + factor * (a - b)


def _brightness(x, m, g):
    return _blend(x, torch.zeros_like(x), 1 + 0.9 * _signed(m, g))


def _contrast(x, m, g):
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean.expand_as(x), 1 + 0.9 * _signed(m, g))


def _colour(x, m, g):
    return _blend(x, _gray(x).expand_as(x), 1 + 0.9 * _signed(m, g))


def _sharpness(x, m, g):
    c = x.shape[1]
    k = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], device=x.device) / 13
    blur = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(c, 1, 3, 3), groups=c)
    return _blend(x, blur, 1 + 0.9 * _signed(m, g))


def _posterize(x, m, g):
    bits = (8 - (m * 4).round()).view(-1, 1, 1, 1)  # keep 8 down to 4 bits
    step = 2 ** (8 - bits)
    return torch.floor(x * 255 / step) * step / 255


def _solarize(x, m, g):
    thr = (1 - m).view(-1, 1, 1, 1)  # m = 0 leaves the image alone
    return torch.where(x >= thr, 1 - x, x)


def _autocontrast(x, m, g):
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 1e-3, (x - lo) / span.clamp_min(1e-3), x)


def _equalize(x, m, g):
    """Per-channel histogram equalisation on 256 bins (maps each level to its CDF value)."""
    b, c, h, w = x.shape
    q = (x * 255).round().long().clamp(0, 255).view(b * c, h * w)
    hist = torch.zeros(b * c, 256, device=x.device).scatter_add_(1, q, torch.ones_like(q, dtype=x.dtype))
    cdf = hist.cumsum(1)
    cdf_min = cdf.gather(1, q.min(1, keepdim=True).values)
    lut = ((cdf - cdf_min) / (h * w - cdf_min).clamp_min(1)).clamp(0, 1)
    return lut.gather(1, q).view(b, c, h, w)


def _affine(x, theta):
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _translate(x, m, g):
    b = x.shape[0]
    shift = 0.6 * m[:, None] * torch.where(_rand(2 * b, g, x.device).view(b, 2) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shift  # grid units: 0.6 = 30% of the image side
    return _affine(x, theta)


def _rotate(x, m, g):
    a = _signed(m, g).view(-1) * (30 * math.pi / 180)
    cos, sin = torch.cos(a), torch.sin(a)
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(a)], 1),
                         torch.stack([sin, cos, torch.zeros_like(a)], 1)], 1)
    return _affine(x, theta)


STRONG_OPS = {
    "identity": lambda x, m, g: x, "brightness": _brightness, "contrast": _contrast,
    "colour": _colour, "sharpness": _sharpness, "posterize": _posterize, "solarize": _solarize,
    "autocontrast": _autocontrast, "equalize": _equalize, "translate": _translate, "rotate": _rotate,
}


def rand_augment(x: torch.Tensor, g: torch.Generator, n_ops: int = 2) -> torch.Tensor:
    """Apply n_ops ops per image, each op and magnitude (uniform in [0, 1]) drawn per image."""
    ops = list(STRONG_OPS.values())
    b = x.shape[0]
    x = x.clone()
    for _ in range(n_ops):
        choice = torch.randint(0, len(ops), (b,), generator=g)
        mag = torch.rand(b, generator=g).to(x.device)
        for k, op in enumerate(ops):
            sel = (choice == k).nonzero().view(-1)  # fixed op order keeps generator use deterministic
            if len(sel):
                sel = sel.to(x.device)
                x[sel] = op(x[sel], mag[sel], g).clamp(0.0, 1.0)
    return x


def strong(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """RandAugment-style pair of ops, then random crop, flip and cutout (half the image side)."""
    size = x.shape[-1]
    x = rand_augment(x, g)
    x = random_crop(x, crop_pad(size), g)
    x = random_flip(x, g)
    return cutout(x, max(1, size // 2), g)


def make_transform(spec: str, shape: tuple):
    """spec -> callable(x (B, *shape) float in [0, 1], g) -> same shape, or None for no-op.

    'crop' pads by crop_pad(W) (4 at 32 px, 2 at 28, 1 at 8); 'flip' mirrors left-right.
    Points (shape (2,)) are never augmented: every spec gives None.
    """
    if spec not in TRANSFORM_SPECS:
        raise DualatError(f"unknown augmentation {spec!r}; choose one of {', '.join(TRANSFORM_SPECS)}")
    if len(shape) != 3 or spec == "none":
        return None
    pad = crop_pad(shape[-1])
    if spec == "flip":
        return random_flip
    if spec == "crop":
        return lambda x, g: random_crop(x, pad, g)
    if spec == "crop_flip":
        return lambda x, g: random_flip(random_crop(x, pad, g), g)
    return strong
