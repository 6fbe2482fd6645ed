"""In-memory labelled dataset: the fast path every loader except image folders returns."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..errors import DualatError


class ImageSet(Dataset):
    """A whole dataset held in two tensors.

    x: uint8 (N, C, H, W) with values 0..255 for images, or float32 (N, 2) in [0, 1] for the
       2-D toy data (points are not quantised, so they stay float).
    y: int64 (N,) class indices in [0, len(classes)).
    classes: one name per class.

    Items and batches come out as float32 in [0, 1]; storing uint8 keeps CIFAR-size sets at a
    quarter of the float memory.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, classes: list[str], name: str = ""):
        if x.dtype == torch.uint8:
            if x.dim() != 4:
                raise DualatError(f"ImageSet {name!r}: uint8 images must be (N, C, H, W), got {tuple(x.shape)}")
        elif x.dtype == torch.float32:
            if x.dim() != 2:
                raise DualatError(f"ImageSet {name!r}: float32 data must be (N, D) points, got {tuple(x.shape)}")
        else:
            raise DualatError(f"ImageSet {name!r}: x must be uint8 images or float32 points, got {x.dtype}")
        y = torch.as_tensor(y, dtype=torch.int64)
        if y.shape != (x.shape[0],):
            raise DualatError(f"ImageSet {name!r}: {x.shape[0]} inputs but labels of shape {tuple(y.shape)}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(classes)):
            raise DualatError(f"ImageSet {name!r}: labels must lie in [0, {len(classes)}), "
                              f"got [{int(y.min())}, {int(y.max())}]")
        self.x = x
        self.y = y
        self.classes = list(classes)
        self.name = name

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one input: (C, H, W) for images, (2,) for toy points."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return self.x.shape[0]

    def _to_float(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        return x.clone()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """One item: (float32 tensor of `shape` in [0, 1], class index)."""
        return self._to_float(self.x[i]), int(self.y[i])

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather a batch: idx int64 (B,) -> (float32 (B, *shape) in [0, 1], int64 (B,))."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        return self._to_float(self.x[idx]), self.y[idx].clone()

    def subset(self, n: int) -> "ImageSet":
        """The first n items (all of them when n >= len) as a new ImageSet sharing memory."""
        n = max(0, min(int(n), len(self)))
        return ImageSet(self.x[:n], self.y[:n], self.classes, self.name)

    def __repr__(self) -> str:
        return (f"ImageSet({self.name!r}, n={len(self)}, shape={self.shape}, "
                f"classes={self.num_classes})")
