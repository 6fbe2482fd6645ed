"""Classifier architectures for dualat; every model maps inputs in [0, 1] to logits.

`create_model(name, num_classes, ...)` returns a `Classifier` (normalisation inside) around
a registered backbone. Importing this package registers all architectures.
"""
from .batchnorm import freeze_batchnorm, is_batchnorm_frozen, unfreeze_batchnorm
from .classifier import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, Classifier
from .registry import check_kwargs, create_model, get_model_spec, list_models, register_model
from .stats import count_parameters, forward_flops
from ..configcheck import check_choice, name_check
from ..errors import DualatError

# Imported for their @register_model side effect.
from . import preact_resnet, resnet, small, wide_resnet  # noqa: E402,F401  isort: skip


@name_check
def check_config_names(cfg) -> None:
    """The model section's names, against the model registry: model.name and model.kwargs."""
    check_choice(cfg.model.name, "model.name", list_models())
    try:
        check_kwargs(get_model_spec(cfg.model.name), cfg.model.kwargs)
    except DualatError as exc:
        raise DualatError(f"config key model.kwargs: {exc}") from None

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "IMAGENET_MEAN", "IMAGENET_STD", "Classifier",
    "count_parameters", "create_model", "forward_flops", "freeze_batchnorm",
    "get_model_spec", "is_batchnorm_frozen", "list_models", "register_model",
    "unfreeze_batchnorm",
]
