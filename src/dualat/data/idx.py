"""MNIST-format (idx) readers for Fashion-MNIST and MNIST, header parsing done here by hand."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DualatError
from .imageset import ImageSet

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"

_PREFIX = {"train": "train", "test": "t10k"}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, OSError, zlib.error) as e:
        text = " ".join(str(e).split())[:200]  # one line, whatever the exception held
        raise DualatError(f"cannot read {path}: {type(e).__name__}: {text} (truncated or corrupt "
                          f"download?); replace the file with a fresh copy") from None


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Parse one idx file (optionally gzipped) -> uint8 array.

    Images (magic 2051): 16-byte header (magic, n, rows, cols; big-endian int32) -> (n, rows, cols).
    Labels (magic 2049): 8-byte header (magic, n) -> (n,).
    The payload must be exactly n*rows*cols (or n) bytes.
    """
    path = Path(path)
    raw = _read_bytes(path)
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DualatError(f"{path} is {len(raw)} bytes, too short for an idx header; "
                          f"replace the file with a fresh copy")
    found = struct.unpack(">i", raw[:4])[0]
    if found != magic:
        kind = "image" if magic == IMAGES_MAGIC else "label"
        raise DualatError(f"{path} is not an idx {kind} file (magic number {found}, expected {magic}); "
                          f"check the file name or replace the file with a fresh copy")
    dims = struct.unpack(">" + "i" * ndim, raw[4:header])
    expected = int(np.prod(dims))
    if any(d < 0 for d in dims) or len(raw) - header != expected:
        raise DualatError(f"{path} holds {len(raw) - header} data bytes but its header {dims} promises "
                          f"{expected} (truncated or corrupt download?); replace the file with a fresh copy")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        p = folder / name
        if p.is_file():
            return p
    return None


def _find_pair(folders: list[Path], split: str) -> tuple[Path, Path] | None:
    pre = _PREFIX[split]
    for folder in folders:
        img = _find_file(folder, f"{pre}-images-idx3-ubyte")
        lab = _find_file(folder, f"{pre}-labels-idx1-ubyte")
        if img is not None and lab is not None:
            return img, lab
    return None


def load_idx_pair(images: Path, labels: Path, classes: list[str], name: str) -> ImageSet:
    """Read an (images, labels) idx pair -> ImageSet with x uint8 (N, 1, H, W), y int64 (N,)."""
    x = read_idx(images, IMAGES_MAGIC)
    y = read_idx(labels, LABELS_MAGIC)
    if x.shape[1:] != (28, 28):
        raise DualatError(f"{images} holds {x.shape[1]}x{x.shape[2]} images but {name} images are 28x28; "
                          f"check the file or replace it with a fresh copy")
    if len(x) != len(y):
        raise DualatError(f"{images} has {len(x)} images but {labels} has {len(y)} labels; "
                          f"the two files are from different downloads, replace them")
    if len(y) and int(y.max()) >= len(classes):
        raise DualatError(f"{labels} contains label {int(y.max())} but {name} has {len(classes)} "
                          f"classes; replace the file with a fresh copy")
    xt = torch.from_numpy(x.copy()).unsqueeze(1)
    yt = torch.from_numpy(y.astype(np.int64))
    return ImageSet(xt, yt, classes, name)


def _check_split(split: str) -> None:
    if split not in _PREFIX:
        raise DualatError(f"split must be 'train' or 'test', got {split!r}")


def load_fashion_mnist(split: str = "train", root: str | None = None, **_) -> ImageSet:
    """Fashion-MNIST (60,000 train / 10,000 test, uint8 (1, 28, 28)).

    Looks in `root`, then `root/FashionMNIST/raw` (torchvision's layout); without a root, in
    /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist).
    """
    _check_split(split)
    folders = ([Path(root), Path(root) / "FashionMNIST" / "raw"] if root is not None
               else [Path(FASHION_DEFAULT_ROOT)])
    pair = _find_pair(folders, split)
    if pair is None:
        looked = " and ".join(str(f) for f in folders)
        pre = _PREFIX[split]
        raise DualatError(
            f"Fashion-MNIST {split} files ({pre}-images-idx3-ubyte[.gz], {pre}-labels-idx1-ubyte[.gz]) "
            f"not found: looked in {looked}. Install them with `apt-get install dataset-fashion-mnist` "
            f"(as root) or pass data.root=DIR for a folder holding them")
    return load_idx_pair(*pair, FASHION_CLASSES, "fashion_mnist")


def load_mnist(split: str = "train", root: str | None = None, **_) -> ImageSet:
    """MNIST from user-supplied idx files in `root` or `root/MNIST/raw`; no default location."""
    _check_split(split)
    pre = _PREFIX[split]
    files = f"{pre}-images-idx3-ubyte[.gz] and {pre}-labels-idx1-ubyte[.gz]"
    if root is None:
        raise DualatError(f"MNIST has no default location here: pass data.root=DIR for a folder "
                          f"holding {files} (or DIR/MNIST/raw/ in torchvision's layout)")
    folders = [Path(root), Path(root) / "MNIST" / "raw"]
    pair = _find_pair(folders, split)
    if pair is None:
        looked = " and ".join(str(f) for f in folders)
        raise DualatError(f"MNIST {split} files ({files}) not found: looked in {looked}. "
                          f"Copy them there or pass data.root=DIR for a folder holding them")
    return load_idx_pair(*pair, MNIST_CLASSES, "mnist")
