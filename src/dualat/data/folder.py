"""ImageFolder-layout datasets (`root/<class>/<image>`) read lazily with PIL, and image helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DualatError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")
# Class folders only admit the common photo formats; seed folders take everything above.
FOLDER_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _pil():
    from PIL import Image
    return Image


def load_image(path: str | Path, channels: int) -> torch.Tensor:
    """Decode one file -> uint8 (channels, H, W) with values 0..255 (1 -> gray 'L', 3 -> 'RGB')."""
    if channels not in (1, 3):
        raise DualatError(f"images can be read with 1 or 3 channels, not {channels}; "
                          f"set data.channels to 1 or 3")
    Image = _pil()
    try:
        with Image.open(path) as im:
            im.load()
            # 'P' and 'LA'/'RGBA' need converting through RGB(A) so palettes and alpha are honoured.
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA")
            if im.mode.startswith("I"):
                # 16-bit gray (PNG 'I;16' or 'I'): PIL's convert would clip everything above 255 to white
                deep = np.asarray(im, dtype=np.float64) / 257.0
                im = Image.fromarray(deep.round().clip(0, 255).astype(np.uint8))
            elif im.mode == "F":
                raise DualatError(f"image {path} holds 32-bit floats of unknown range; "
                                  f"save it as an 8-bit PNG or JPEG")
            im = im.convert("L" if channels == 1 else "RGB")
            arr = np.array(im, dtype=np.uint8)
    except DualatError:
        raise
    except Exception as e:  # PIL raises many types for damaged files
        text = " ".join(str(e).split())[:200]  # one line, whatever the exception held
        raise DualatError(f"cannot read image {path}: {type(e).__name__}: {text}. Check that the path names "
                          f"an image (PNG, JPEG, BMP, ...), or convert the file to PNG") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def resize_center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 or float (C, H, W) -> float32 (C, size, size) in [0, 1].

    The shorter side is resized to `size` (antialiased bilinear), then the centre is cropped,
    the usual ImageNet evaluation geometry.
    """
    x = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
    _, h, w = x.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        x = torch.nn.functional.interpolate(x[None], size=(nh, nw), mode="bilinear",
                                            align_corners=False, antialias=True)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, top:top + size, left:left + size].clamp_(0.0, 1.0).contiguous()


def list_images(root: Path, recursive: bool, extensions=IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under root, sorted so every machine sees the same order."""
    it = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in extensions)


class FolderImageSet(Dataset):
    """Lazy ImageFolder dataset: `root/<class>/*.{png,jpg,jpeg,bmp,webp}` (classes sorted by name).

    Items are float32 (C, image_size, image_size) in [0, 1]; files are decoded on every access,
    so this is the slow path meant for ImageNet-size data that does not fit in memory.
    """

    def __init__(self, root: str | Path, image_size: int, channels: int = 3):
        root = Path(root)
        if not root.is_dir():
            raise DualatError(f"image folder {root} does not exist; create it with one sub-folder "
                              f"per class or pass data.root=DIR")
        if channels not in (1, 3):
            raise DualatError(f"data.channels must be 1 or 3 for image folders, got {channels}")
        if not isinstance(image_size, int) or image_size < 1:
            raise DualatError(f"data.image_size must be a positive integer for image folders, got {image_size!r}")
        self.root = root
        self.image_size = image_size
        self.channels = channels
        self.classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not self.classes:
            loose = list_images(root, recursive=False, extensions=FOLDER_EXTENSIONS)
            hint = (f" ({len(loose)} images lie directly in it: move them into one sub-folder per class)"
                    if loose else "")
            raise DualatError(f"image folder {root} has no class sub-folders{hint}; "
                              f"the layout must be {root}/<class>/<image>.png")
        files, labels = [], []
        for k, c in enumerate(self.classes):
            found = list_images(root / c, recursive=True, extensions=FOLDER_EXTENSIONS)
            files += found
            labels += [k] * len(found)
        if not files:
            raise DualatError(f"image folder {root} contains no images ({', '.join(FOLDER_EXTENSIONS)}) "
                              f"in its {len(self.classes)} class folders; put images in {root}/<class>/")
        self.files = files
        self.y = torch.tensor(labels, dtype=torch.int64)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int) -> torch.Tensor:
        return resize_center_crop(load_image(self.files[i], self.channels), self.image_size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """One item: (float32 (C, S, S) in [0, 1], class index)."""
        return self._load(int(i)), int(self.y[i])

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """idx int64 (B,) -> (float32 (B, C, S, S) in [0, 1], int64 (B,)); decodes B files."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        x = torch.stack([self._load(int(i)) for i in idx]) if len(idx) else torch.zeros(0, *self.shape)
        return x, self.y[idx].clone()

    def subset(self, n: int) -> "FolderImageSet":
        """The first n files (in sorted class/file order) as a new FolderImageSet."""
        out = object.__new__(FolderImageSet)
        out.__dict__.update(self.__dict__)
        n = max(0, min(int(n), len(self)))
        out.files, out.y = self.files[:n], self.y[:n]
        return out

    def __repr__(self) -> str:
        return (f"FolderImageSet({os.fspath(self.root)!r}, n={len(self)}, shape={self.shape}, "
                f"classes={self.num_classes})")
