"""Dataset registry: `load_dataset(name, split, ...)` and `dataset_info(name)` for config checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import DualatError
from .cifar import load_cifar10, load_cifar100
from .folder import FolderImageSet
from .idx import FASHION_DEFAULT_ROOT, load_fashion_mnist, load_mnist
from .imageset import ImageSet

SPLITS = ("train", "test")
DIGITS_TRAIN = 1500  # of sklearn's 1,797 digits; the remaining 297 are the test split
TOY2D_SIZES = {"train": 4000, "test": 1000}
TOY2D_CLASSES = ["blob_center", "blob_corner", "ring_inner", "ring_outer"]
FAKE_SIZES = {"train": 256, "test": 64}
_SPLIT_SEED = {"train": 0, "test": 1}


def load_digits(split: str = "train", **_) -> ImageSet:
    """sklearn's 8x8 digits as uint8 (N, 1, 8, 8); values 0..16 are scaled by 255/16 and rounded.

    Split: the first 1,500 images (in sklearn's order, which groups writers) train, the last 297
    test. No shuffling, so the split never changes between library versions.
    """
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    x = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    sl = slice(0, DIGITS_TRAIN) if split == "train" else slice(DIGITS_TRAIN, None)
    return ImageSet(torch.from_numpy(x[sl].copy()), torch.from_numpy(y[sl].copy()),
                    [str(i) for i in range(10)], "digits")


def make_toy2d(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n labelled points float32 (n, 2) in [0, 1]^2 and int64 labels in 0..3.

    Class 0: Gaussian blob at the centre (std 0.04); class 1: blob at (0.85, 0.15) (std 0.035);
    classes 2, 3: rings around the centre of radius 0.2 and 0.36 (radial std 0.015). Classes are
    balanced (n // 4 each, the remainder going to the first classes), then shuffled.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    y = y[torch.randperm(n, generator=g)]
    noise = torch.randn(n, 2, generator=g)
    angle = torch.rand(n, generator=g) * (2 * math.pi)
    radial = torch.randn(n, generator=g)
    x = torch.empty(n, 2)
    centre = torch.tensor([0.5, 0.5])
    for k, (mu, std) in enumerate([((0.5, 0.5), 0.04), ((0.85, 0.15), 0.035)]):
        m = y == k
        x[m] = torch.tensor(mu) + std * noise[m]
    for k, radius in ((2, 0.2), (3, 0.36)):
        m = y == k
        r = radius + 0.015 * radial[m]
        x[m] = centre + torch.stack([r * torch.cos(angle[m]), r * torch.sin(angle[m])], dim=1)
    return x.clamp_(0.0, 1.0), y.long()


def load_toy2d(split: str = "train", **_) -> ImageSet:
    """4-class 2-D points: 4,000 train / 1,000 test, fixed seeds 0 (train) and 1 (test)."""
    x, y = make_toy2d(TOY2D_SIZES[split], _SPLIT_SEED[split])
    return ImageSet(x, y, TOY2D_CLASSES, "toy2d")


def load_fake(split: str = "train", image_size: int | None = None, channels: int | None = None,
              num_classes: int | None = None, **_) -> ImageSet:
    """Random uint8 images (C, S, S) (default 3x32x32), 256 train / 64 test, fixed seeds.

    Each class has a random prototype image and items are half prototype, half fresh noise, so
    a classifier can learn something in smoke tests of the big presets.
    """
    c, s, k = channels or 3, image_size or 32, num_classes or 10
    n = FAKE_SIZES[split]
    protos = torch.randint(0, 256, (k, c, s, s), generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(100 + _SPLIT_SEED[split])
    y = torch.randint(0, k, (n,), generator=g)
    noise = torch.randint(0, 256, (n, c, s, s), generator=g)
    x = ((protos[y] + noise) // 2).to(torch.uint8)
    return ImageSet(x, y, [f"class{i}" for i in range(k)], "fake")


def _folder_split(root: str | None, split: str, names: tuple[str, ...], what: str, layout: str) -> Path:
    if root is None:
        raise DualatError(f"{what} needs data.root=DIR with the layout {layout}")
    for n in names:
        if (Path(root) / n).is_dir():
            return Path(root) / n
    looked = " and ".join(str(Path(root) / n) for n in names)
    raise DualatError(f"{what} {split} split not found: looked for {looked}. "
                      f"Pass data.root=DIR with the layout {layout}")


def load_imagenet(split: str = "train", root: str | None = None, image_size: int | None = None,
                  channels: int | None = None, **_) -> FolderImageSet:
    """ImageNet as ImageFolder: `root/train/<wnid>/*.JPEG`, test split = `root/val/<wnid>/*.JPEG`."""
    folder = _folder_split(root, split, ("train",) if split == "train" else ("val",), "ImageNet",
                           "DIR/train/<wnid>/*.JPEG and DIR/val/<wnid>/*.JPEG (val sorted into class folders)")
    return FolderImageSet(folder, image_size or 256, channels or 3)


def load_imagefolder(split: str = "train", root: str | None = None, image_size: int | None = None,
                     channels: int | None = None, **_) -> FolderImageSet:
    """Any ImageFolder tree: `root/train/<class>/*`, test split = `root/test/` or else `root/val/`."""
    if image_size is None:
        raise DualatError("data.name=imagefolder needs data.image_size=S (images are resized and "
                          "centre-cropped to SxS)")
    folder = _folder_split(root, split, ("train",) if split == "train" else ("test", "val"), "imagefolder",
                           "DIR/train/<class>/<image> and DIR/test/<class>/<image> (or DIR/val/)")
    return FolderImageSet(folder, image_size, channels or 3)


DATASETS = {
    "fashion_mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "digits": load_digits,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "imagenet": load_imagenet,
    "imagefolder": load_imagefolder,
    "toy2d": load_toy2d,
    "fake": load_fake,
}

_NATIVE = {  # shape, classes of the in-memory image datasets
    "fashion_mnist": ((1, 28, 28), 10), "mnist": ((1, 28, 28), 10), "digits": ((1, 8, 8), 10),
    "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100),
}


def _adapt(ds: ImageSet, image_size: int | None, channels: int | None) -> ImageSet:
    """Resize (antialiased bilinear, square) and/or change channels (gray repeated to RGB, RGB to
    ITU-R 601 luma) of an in-memory uint8 set; the result is re-quantised to uint8."""
    c, h, w = ds.shape
    if channels not in (None, 1, 3):
        raise DualatError(f"data.channels must be 1 or 3, got {channels}")
    want_c = channels or c
    want_s = image_size or None
    if want_c == c and (want_s is None or (want_s, want_s) == (h, w)):
        return ds
    outs = []
    for chunk in ds.x.split(4096):  # bounded float memory for 60k-image sets
        x = chunk.float()
        if want_c != c:
            x = x.expand(-1, 3, -1, -1) if c == 1 else (
                x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        if want_s is not None and (want_s, want_s) != (h, w):
            x = torch.nn.functional.interpolate(x, size=(want_s, want_s), mode="bilinear",
                                                align_corners=False, antialias=True)
        outs.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return ImageSet(torch.cat(outs), ds.y, ds.classes, ds.name)


def load_dataset(name: str, split: str = "train", root: str | None = None, image_size: int | None = None,
                 channels: int | None = None, **kwargs) -> ImageSet | FolderImageSet:
    """Load a dataset split by name (see DATASETS); never downloads anything.

    Returns an ImageSet (uint8 (N, C, H, W), or float32 (N, 2) for toy2d) or, for imagenet and
    imagefolder, a lazy FolderImageSet. image_size/channels resize or convert the in-memory image
    sets too (e.g. Fashion-MNIST at 3x32x32). Extra kwargs (num_classes for `fake`) go to the loader.
    """
    if name not in DATASETS:
        raise DualatError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    if split not in SPLITS:
        raise DualatError(f"split must be 'train' or 'test', got {split!r}")
    if name == "toy2d" and (image_size is not None or channels is not None):
        raise DualatError("toy2d is 2-D points: leave data.image_size and data.channels unset")
    ds = DATASETS[name](split=split, root=root, image_size=image_size, channels=channels, **kwargs)
    if name in _NATIVE:
        ds = _adapt(ds, image_size, channels)
    return ds


def dataset_info(name: str, image_size: int | None = None, channels: int | None = None,
                 num_classes: int | None = None, **_) -> dict:
    """What is known without loading: dict(shape=tuple|None, num_classes=int|None, default_root=str|None).

    shape is (C, H, W) for images, (2,) for toy2d; None entries are unknowable in advance
    (an imagefolder's classes, or its shape without image_size).
    """
    if name not in DATASETS:
        raise DualatError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    default_root = FASHION_DEFAULT_ROOT if name == "fashion_mnist" else None
    if name in _NATIVE:
        (c, h, w), k = _NATIVE[name]
        if image_size:
            h = w = image_size
        return dict(shape=(channels or c, h, w), num_classes=k, default_root=default_root)
    if name == "toy2d":
        return dict(shape=(2,), num_classes=4, default_root=None)
    if name == "imagenet":
        s = image_size or 256
        return dict(shape=(channels or 3, s, s), num_classes=1000, default_root=None)
    if name == "fake":
        s = image_size or 32
        return dict(shape=(channels or 3, s, s), num_classes=num_classes or 10, default_root=None)
    # imagefolder: the classes are the folder's sub-directories
    shape = (channels or 3, image_size, image_size) if image_size else None
    return dict(shape=shape, num_classes=num_classes, default_root=None)


def load_split(data, split: str):
    """The `split` of the dataset a DataConfig describes (its name, root, image_size, channels,
    num_classes): the one place a DataConfig becomes load_dataset's arguments."""
    return load_dataset(data.name, split, root=data.root, image_size=data.image_size, channels=data.channels,
                        num_classes=data.num_classes)


def data_info(data) -> dict:
    """dict(shape (C, H, W) or (2,), num_classes) of a DataConfig's dataset: what dataset_info
    knows in advance, else what its test split holds. The one owner of "the dataset's shape"."""
    info = dataset_info(data.name, image_size=data.image_size, channels=data.channels, num_classes=data.num_classes)
    if info["shape"] is None or info["num_classes"] is None:
        test = load_split(data, "test")
        info = {"shape": test.shape, "num_classes": test.num_classes}
    return {"shape": tuple(info["shape"]), "num_classes": info["num_classes"]}
