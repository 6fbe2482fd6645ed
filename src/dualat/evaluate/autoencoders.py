"""Small convolutional autoencoders for the IM1 / IM2 realism scores of counterfactuals (Van
Looveren & Klaise 2021): one per class, trained on that class's training images, and one on all
of them. Trained once per dataset (clean MSE, fixed seed) and cached beside the evaluation
network: DUALAT_CACHE/autoencoders/<dataset>-<shape>-k<classes>-<ARCH>.safetensors, one file
holding every autoencoder (`class<c>.` and `all.` prefixes) with a JSON card.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import atomic_save, safe_load
from ..config import DataConfig
from ..data import data_info, load_split
from ..errors import DualatError
from ..ui import progress
from ..worklock import claim
from .evalnet import cache_dir

AE_SEED = 4321
ARCH = "ae1"  # a new architecture gets a new name, so that no cache holds weights it cannot load


class Autoencoder(nn.Module):
    """x (N, C, H, W) in [0, 1] -> reconstruction of the same shape in [0, 1]. Two stride-2
    convolutions down to a `code`-channel map of H/4 x W/4 (28x28x1 -> 7x7x4: 196 numbers, a
    quarter of the input), two upsampling convolutions back. Fashion-MNIST, 300 Adam steps of 32
    images: test MSE 0.012 for class 0, about 9 s per autoencoder on one loaded CPU core."""

    def __init__(self, channels: int, code: int = 4, width: int = 16):
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(channels, width, 3, 2, 1), nn.ReLU(),
                                    nn.Conv2d(width, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, code, 1))
        self.decode = nn.Sequential(nn.Conv2d(code, width, 3, 1, 1), nn.ReLU(), nn.Upsample(scale_factor=2),
                                    nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(), nn.Upsample(scale_factor=2),
                                    nn.Conv2d(width, channels, 3, 1, 1))

    def forward(self, x):
        y = self.decode(self.encode(x))
        if y.shape[-2:] != x.shape[-2:]:  # sizes not divisible by 4
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(y)


def default_autoencoder_path(data: DataConfig) -> Path:
    info = data_info(data)
    shape = "x".join(str(s) for s in info["shape"])
    return cache_dir() / "autoencoders" / f"{data.name}-{shape}-k{info['num_classes']}-{ARCH}.safetensors"


def _fit(ae: Autoencoder, x: torch.Tensor, iterations: int, batch_size: int, g: torch.Generator, bar) -> None:
    opt = torch.optim.Adam(ae.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations)
    ae.train()
    for _ in range(iterations):
        xb = x[torch.randint(len(x), (min(batch_size, len(x)),), generator=g)].float() / 255
        loss = F.mse_loss(ae(xb), xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update(1)
    ae.eval()


def train_autoencoders(data: DataConfig, out: Path, iterations: int = 300, batch_size: int = 32,
                       show_progress: bool = True) -> Path:
    """Train the K class autoencoders and the all-data one on `data`'s training split; save them
    (atomically) with a card holding each one's mean squared reconstruction error on the test split."""
    train_set, test_set = load_split(data, "train"), load_split(data, "test")
    if len(train_set.shape) != 3 or not hasattr(train_set, "x"):
        raise DualatError(f"IM1/IM2 autoencoders need an in-memory image dataset; {data.name} is not one")
    k, c = train_set.num_classes, train_set.shape[0]
    torch.manual_seed(AE_SEED)
    g = torch.Generator().manual_seed(AE_SEED)
    bar = progress(iterations * (k + 1), 0, f"IM1/IM2 autoencoders {data.name} ({k + 1} x {iterations} steps)",
                   show_progress)
    state, card = {}, {"dataset": data.name, "arch": ARCH, "iterations": iterations, "batch_size": batch_size,
                       "seed": AE_SEED, "test_mse": {}}
    t0 = time.time()
    for name in [f"class{i}" for i in range(k)] + ["all"]:
        which = train_set.y == int(name[5:]) if name != "all" else slice(None)
        ae = Autoencoder(c)
        _fit(ae, train_set.x[which], iterations, batch_size, g, bar)
        state.update({f"{name}.{key}": v for key, v in ae.state_dict().items()})
        tx = test_set.x[test_set.y == int(name[5:])] if name != "all" else test_set.x[:2000]
        with torch.no_grad():
            card["test_mse"][name] = float(F.mse_loss(ae(tx.float() / 255), tx.float() / 255))
    bar.close()
    card["train_s"] = round(time.time() - t0, 1)
    atomic_save(state, out)
    out.with_suffix(".json").write_text(json.dumps(card, indent=1))
    return out


def load_autoencoders(data: DataConfig, iterations: int = 300, show_progress: bool = True, wait_s: float = 1800):
    """{'class0': ae, ..., 'all': ae} for `data`: from the cache, or trained now and cached. When
    another process is training them (a claim on the file), waits for its file instead."""
    path = default_autoencoder_path(data)
    deadline = time.time() + wait_s
    while not path.exists():
        with claim(path.with_suffix(".claim")) as mine:
            if mine:
                if show_progress:
                    print(f"training the IM1/IM2 autoencoders for {data.name} once (cached at {path})")
                train_autoencoders(data, path, iterations, show_progress=show_progress)
                break
        if time.time() > deadline:
            raise DualatError(f"another process has been training {path} for {wait_s:.0f} s; delete "
                              f"{path.with_suffix('.claim')} if none does")
        time.sleep(2)
    state = safe_load(path)
    info = data_info(data)
    aes = {}
    for name in [f"class{i}" for i in range(info["num_classes"])] + ["all"]:
        ae = Autoencoder(info["shape"][0])
        prefix = name + "."
        ae.load_state_dict({key[len(prefix):]: v for key, v in state.items() if key.startswith(prefix)})
        aes[name] = ae.eval()
    return aes, path


__all__ = ["Autoencoder", "train_autoencoders", "load_autoencoders", "default_autoencoder_path"]
