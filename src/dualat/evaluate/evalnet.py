"""The evaluation network: an independent plain classifier per dataset, whose penultimate
features measure generated images (Frechet distance) and whose predictions check their class.

It is never the model under evaluation. It is trained once (clean cross-entropy, fixed seed),
stored as safetensors with a JSON card, and reused by every run on the same dataset.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import atomic_save, extract_state_dict, load_weights, safe_load
from ..config import DataConfig, OptimConfig
from ..data import BatchStream, data_info, load_split
from ..data.transforms import make_transform
from ..errors import DualatError
from ..models import create_model
from ..optim import learning_rate, set_lr
from ..ui import progress
from .robust import clean_accuracy

EVALNET_SEED = 1234


def cache_dir() -> Path:
    return Path(os.environ.get("DUALAT_CACHE", Path.home() / ".cache" / "dualat"))


def default_evalnet_path(data: DataConfig, iterations: int = 1500) -> Path:
    """One cached network per dataset name, input shape, class count and training length (e.g.
    fashion_mnist-1x28x28-k10-it1500), so that a network trained for another `eval.evalnet_iterations`
    is never picked up by mistake. A cache written before the length was in the name
    (fashion_mnist-1x28x28-k10) is still used when its card says the same length."""
    info = data_info(data)
    shape = "x".join(str(s) for s in info["shape"])
    stem = cache_dir() / "evalnet" / f"{data.name}-{shape}-k{info['num_classes']}"
    path = stem.with_name(f"{stem.name}-it{iterations}.safetensors")
    legacy = stem.with_name(f"{stem.name}.safetensors")
    if not path.exists() and legacy.exists() and _card_iterations(legacy) == iterations:
        return legacy
    return path


def _card_iterations(weights: Path):
    try:
        return json.loads(weights.with_suffix(".json").read_text()).get("iterations")
    except (OSError, ValueError, AttributeError):
        return None


def _build(data: DataConfig, shape, num_classes: int):
    return create_model("small_cnn", num_classes=num_classes, in_channels=shape[0], image_size=shape[-1],
                        mean=data.mean, std=data.std)


def train_evalnet(data: DataConfig, out: str | Path | None = None, iterations: int = 1500, batch_size: int = 128,
                  lr: float = 0.05, show_progress: bool = True) -> Path:
    """Train the plain classifier on `data`, save it to `out` (default: the cache), return the path."""
    out = Path(out) if out else default_evalnet_path(data, iterations)
    train_set, test_set = load_split(data, "train"), load_split(data, "test")
    if len(train_set.shape) != 3:
        raise DualatError(f"an evaluation network needs image data; {data.name} has shape {train_set.shape}")
    torch.manual_seed(EVALNET_SEED)
    net = _build(data, train_set.shape, train_set.num_classes)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    stream = BatchStream(train_set, batch_size, seed=EVALNET_SEED, transform=make_transform("crop_flip", train_set.shape))
    net.train()
    bar = progress(iterations, 0, f"evalnet {data.name}", show_progress)
    schedule = OptimConfig(lr=lr, schedule="cosine")
    for i in range(iterations):
        set_lr(opt, learning_rate(schedule, i, iterations))
        x, y = next(stream)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(1)
        if i % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    acc = clean_accuracy(net, test_set)
    atomic_save(net.state_dict(), out)
    card = {"dataset": data.name, "architecture": "small_cnn", "iterations": iterations, "batch_size": batch_size,
            "seed": EVALNET_SEED, "test_accuracy": acc, "test_size": len(test_set)}
    out.with_suffix(".json").write_text(json.dumps(card, indent=1))
    return out


def load_evalnet(data: DataConfig, path: str | Path | None = None, iterations: int = 1500,
                 show_progress: bool = True):
    """The evaluation network for `data`: from `path`, the cache, or trained now and cached."""
    path = Path(path) if path else default_evalnet_path(data, iterations)
    if not path.exists():
        if show_progress:
            print(f"training the evaluation network for {data.name} once (cached at {path})")
        train_evalnet(data, path, iterations=iterations, show_progress=show_progress)
    test_set = load_split(data, "test")
    net = _build(data, test_set.shape, test_set.num_classes)
    try:
        load_weights(net, extract_state_dict(safe_load(path), prefer_ema=False), strict=True)
    except DualatError as exc:
        raise DualatError(f"evaluation network {path}: {exc}; give eval.evalnet=PATH of weights that "
                          "`dualat train-evalnet` wrote for this dataset") from None
    return net.eval()
