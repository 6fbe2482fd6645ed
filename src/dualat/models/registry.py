"""Model registry (timm-style): `register_model`, `create_model`, `list_models`.

A registered builder is `builder(num_classes, in_channels, image_size, **kwargs) -> nn.Module`
returning the bare backbone (it sees normalised inputs); `create_model` validates the
arguments, calls it and wraps the result in a `Classifier` that owns the normalisation.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..errors import DualatError
from .classifier import Classifier


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one architecture."""
    name: str
    builder: Callable[..., nn.Module]
    min_image_size: int       # smallest H = W the downsampling path can take
    vector_input: bool        # True: inputs are (N, D) vectors, image_size/in_channels unused
    mean: object              # default normalisation when create_model gets mean=None
    std: object


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, min_image_size: int = 1, vector_input: bool = False,
                   mean=0.5, std=0.5):
    """Decorator adding `builder` to the registry under `name`; returns the builder unchanged.

    min_image_size: create_model refuses smaller images. vector_input: the model takes (N, D).
    mean/std: the default input normalisation (a number or per-channel list).
    """
    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise DualatError(f"model name {name!r} is already registered; choose another name")
        _REGISTRY[name] = ModelSpec(name, builder, min_image_size, vector_input, mean, std)
        return builder
    return decorate


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def get_model_spec(name: str) -> ModelSpec:
    """The registry entry for `name`; unknown names raise DualatError with a suggestion."""
    spec = _REGISTRY.get(name) if isinstance(name, str) else None
    if spec is None:
        close = difflib.get_close_matches(str(name).lower(), list(_REGISTRY), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DualatError(f"unknown model {name!r}; {hint}known models: {', '.join(list_models())}")
    return spec


def check_kwargs(spec: ModelSpec, kwargs: dict) -> None:
    """Turn a misspelt option into a DualatError instead of a TypeError deep in a builder."""
    params = inspect.signature(spec.builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    fixed = {"num_classes", "in_channels", "image_size"}
    allowed = [n for n, p in params.items() if n not in fixed
               and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for key in kwargs:
        if key not in allowed:
            takes = ", ".join(allowed) if allowed else "no options"
            raise DualatError(f"model {spec.name!r} has no option {key!r}; it takes: {takes}")


def _check_int(value, what: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DualatError(f"{what} must be an integer >= {minimum}, got {value!r}")


def create_model(name: str, num_classes: int, in_channels: int | None = None,
                 image_size: int = 32, mean=None, std=None, **kwargs) -> Classifier:
    """Build registered model `name` wrapped in a Classifier.

    The result maps x in [0, 1], (N, in_channels, image_size, image_size), to logits
    (N, num_classes). mean/std: None = the model's default (0.5/0.5 for most; ImageNet
    statistics for the torchvision-named ResNets, whose public weights expect them).
    in_channels: None = 3 for image models. Vector models (`mlp`) take (N, D): D is
    in_channels (or their `in_features` option), default 2; image_size is ignored for them.
    Extra kwargs go to the builder (e.g. `width=2` for small_cnn, `dropout=0.3` for WRNs).
    """
    spec = get_model_spec(name)
    _check_int(num_classes, "num_classes", 1)
    check_kwargs(spec, kwargs)
    if spec.vector_input and in_channels is not None:
        _check_int(in_channels, "in_channels", 1)
        if kwargs.setdefault("in_features", in_channels) != in_channels:
            raise DualatError(f"model {name!r} got in_channels={in_channels} but in_features="
                              f"{kwargs['in_features']}; give only one of them")
    if not spec.vector_input:
        in_channels = 3 if in_channels is None else in_channels
        _check_int(in_channels, "in_channels", 1)
        _check_int(image_size, "image_size", 1)
        if image_size < spec.min_image_size:
            raise DualatError(f"model {name!r} needs images of at least {spec.min_image_size}x"
                              f"{spec.min_image_size}, got {image_size}; pick a model for small "
                              f"images (e.g. small_cnn) or resize the data")
    net = spec.builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                       **kwargs)
    # For vector models the normalisation spans the builder's input features.
    channels = getattr(net, "in_features", None) if spec.vector_input else in_channels
    return Classifier(net, spec.mean if mean is None else mean,
                      spec.std if std is None else std, in_channels=channels)
