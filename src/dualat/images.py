"""Writing image grids as PNG (no torchvision)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFont


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [0,1] -> (N, H, W, C) uint8."""
    return (x.detach().float().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy())


def grid(x: torch.Tensor, nrow: int | None = None, pad: int = 1, scale: int = 1) -> Image.Image:
    """Tile images (N, C, H, W) in [0,1], `nrow` per row (default ceil(sqrt N)), into one PIL image."""
    imgs = to_uint8(x)
    n, h, w, c = imgs.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    canvas = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = imgs[i]
    img = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def class_grid(x: torch.Tensor, labels: torch.Tensor, num_classes: int, per_class: int = 10, **kw) -> Image.Image:
    """One row per class with up to `per_class` of its images (blank where a class has fewer)."""
    rows = []
    blank = torch.ones_like(x[:1])
    for k in range(num_classes):
        picked = x[labels == k][:per_class]
        pad = per_class - picked.shape[0]
        rows.append(torch.cat([picked, blank.expand(pad, *x.shape[1:])]) if pad else picked)
    return grid(torch.cat(rows), nrow=per_class, **kw)


def save_png(img: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def label_font(size: int):
    """PIL's default font at `size` pixels (scalable with Pillow >= 10.1 and FreeType; the fixed
    bitmap font on older Pillow), for the labels of the figures the library draws."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()
