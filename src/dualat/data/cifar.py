"""CIFAR-10 / CIFAR-100 "python version" folders, read with a pickle loader that cannot run code."""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import DualatError
from .imageset import ImageSet


def _numpy_attr(module_tail: str, name: str):
    # numpy 2 moved numpy.core to numpy._core; pickles may name either spelling.
    for mod in ("numpy._core." + module_tail, "numpy.core." + module_tail):
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    return None


def allowed_globals() -> dict[tuple[str, str], object]:
    """The only callables a CIFAR pickle needs: numpy array/dtype reconstruction and latin1 bytes."""
    table = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
             ("_codecs", "encode"): codecs.encode}
    for tail, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                       ("numeric", "_frombuffer")):
        obj = _numpy_attr(tail, name)
        if obj is not None:
            for prefix in ("numpy._core.", "numpy.core."):
                table[(prefix + tail, name)] = obj
    return table


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler whose find_class refuses anything outside the allow-list, so a crafted file
    naming os.system (or any other global) fails before any call happens."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")
        self._path = path
        self._allowed = allowed_globals()

    def find_class(self, module: str, name: str):
        obj = self._allowed.get((module, name))
        if obj is None:
            raise DualatError(f"{self._path} is not a plain CIFAR pickle: it asks to load {module}.{name}, "
                              f"which a data file never needs (refused so it cannot run code); "
                              f"replace it with the official cifar-*-python.tar.gz contents")
        return obj


def safe_load_pickle(path: str | Path) -> dict:
    """Load a CIFAR batch/meta pickle -> dict (keys bytes or str), refusing any code-running global."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            out = _SafeUnpickler(f, path).load()
    except DualatError:
        raise
    except Exception as e:  # truncated or garbled pickles raise assorted error types
        text = " ".join(str(e).split())[:200]  # one line, whatever the exception held
        raise DualatError(f"cannot unpickle {path}: {type(e).__name__}: {text} (truncated or corrupt?); "
                          f"replace it with the official cifar-*-python.tar.gz contents") from None
    if not isinstance(out, dict):
        raise DualatError(f"{path} holds a {type(out).__name__}, not the dict a CIFAR batch file holds; "
                          f"replace it with the official cifar-*-python.tar.gz contents")
    return out


def _get(d: dict, key: str, path: Path):
    # The official files are Python 2 pickles with bytes keys; re-pickled copies may use str keys.
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DualatError(f"{path} has no {key!r} entry (keys: {sorted(map(str, d))}); "
                      f"replace it with the official cifar-*-python.tar.gz contents")


def _decode_names(names, path: Path) -> list[str]:
    try:
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except Exception:
        raise DualatError(f"{path} has unreadable class names; replace it with a fresh copy") from None


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = safe_load_pickle(path)
    data = np.asarray(_get(d, "data", path))
    labels = np.asarray(_get(d, label_key, path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DualatError(f"{path}: 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}; "
                          f"replace it with a fresh copy")
    if labels.shape != (data.shape[0],):
        raise DualatError(f"{path}: {data.shape[0]} images but {labels.size} labels; replace it with a fresh copy")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DualatError(f"{path}: labels must be in [0, {num_classes}), got [{labels.min()}, {labels.max()}]; "
                          f"replace it with a fresh copy")
    return data, labels.astype(np.int64)


# name -> (folder, train files, test files, meta file, label key, class-name key, classes)
_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", "labels", "label_names", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names", 100),
}


def _locate(name: str, root: str | None) -> Path:
    folder, train_files, _, meta, *_ = _LAYOUT[name]
    pretty = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
    archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    if root is None:
        raise DualatError(f"{pretty} has no default location here: pass data.root=DIR for the folder "
                          f"{folder}/ (or its parent), as extracted from {archive}")
    candidates = [Path(root), Path(root) / folder]
    for c in candidates:
        if (c / meta).is_file() or (c / train_files[0]).is_file():
            return c
    hint = ""
    for c in candidates:
        if (c / archive).is_file():
            hint = f" ({c / archive} is still packed: run `tar xzf {archive}` in {c})"
    looked = " and ".join(str(c) for c in candidates)
    raise DualatError(f"{pretty} not found: looked for {meta} in {looked}{hint}. "
                      f"Pass data.root=DIR for the extracted {folder}/ folder or its parent")


def load_cifar(name: str, split: str = "train", root: str | None = None) -> ImageSet:
    """CIFAR-10 / CIFAR-100 -> ImageSet with x uint8 (N, 3, 32, 32), y int64 (N,)."""
    if split not in ("train", "test"):
        raise DualatError(f"split must be 'train' or 'test', got {split!r}")
    folder = _locate(name, root)
    _, train_files, test_files, meta, label_key, names_key, k = _LAYOUT[name]
    meta_path = folder / meta
    if meta_path.is_file():
        classes = _decode_names(_get(safe_load_pickle(meta_path), names_key, meta_path), meta_path)
        if len(classes) != k:
            raise DualatError(f"{meta_path} lists {len(classes)} classes, expected {k}; replace it with a fresh copy")
    else:  # the meta file only carries names; missing it is not worth refusing to train
        classes = [f"class{i}" for i in range(k)]
    xs, ys = [], []
    for fname in train_files if split == "train" else test_files:
        p = folder / fname
        if not p.is_file():
            raise DualatError(f"{p} is missing; re-extract the {folder.name}/ folder from the official archive")
        x, y = _read_batch(p, label_key, k)
        xs.append(x)
        ys.append(y)
    x = torch.from_numpy(np.concatenate(xs).reshape(-1, 3, 32, 32))
    y = torch.from_numpy(np.concatenate(ys))
    return ImageSet(x, y, classes, name)


def load_cifar10(split: str = "train", root: str | None = None, **_) -> ImageSet:
    """CIFAR-10 (50,000 / 10,000) from `cifar-10-batches-py/` (root may be it or its parent)."""
    return load_cifar("cifar10", split, root)


def load_cifar100(split: str = "train", root: str | None = None, **_) -> ImageSet:
    """CIFAR-100 fine labels (50,000 / 10,000) from `cifar-100-python/` (root may be it or its parent)."""
    return load_cifar("cifar100", split, root)
