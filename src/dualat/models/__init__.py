"""Classifier architectures for dualat; every model maps inputs in [0, 1] to logits.

`create_model(name, num_classes, ...)` returns a `Classifier` (normalisation inside) around
a registered backbone. Importing this package registers all architectures.
"""
from .batchnorm import freeze_batchnorm, is_batchnorm_frozen, unfreeze_batchnorm
from .classifier import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, Classifier
from .registry import create_model, get_model_spec, list_models, register_model
from .stats import count_parameters, forward_flops

# Imported for their @register_model side effect.
from . import preact_resnet, resnet, small, wide_resnet  # noqa: E402,F401  isort: skip

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "IMAGENET_MEAN", "IMAGENET_STD", "Classifier",
    "count_parameters", "create_model", "forward_flops", "freeze_batchnorm",
    "get_model_spec", "is_batchnorm_frozen", "list_models", "register_model",
    "unfreeze_batchnorm",
]
