"""Freeze BatchNorm statistics while keeping its affine parameters trainable.

Fine-tuning with small or adversarial batches would otherwise drag the running mean/var
away from the clean-data statistics. A frozen BN layer normalises with its running
statistics (eval behaviour) and never updates them, yet its weight and bias still learn.

Mechanism: each BN module gets an instance attribute `train` that shadows
`nn.Module.train` and always selects eval mode. `Module.train()` on any parent recurses
through `child.train(mode)`, so the freeze survives `model.train()`; the attribute lives
in the module's `__dict__`, so `copy.deepcopy` and pickling (torch.save of the whole
model) carry it, and the state dict is untouched (checkpoints stay compatible).
Modules rebuilt afterwards (e.g. by `nn.SyncBatchNorm.convert_sync_batchnorm`) are new
objects and must be frozen again.
"""
from __future__ import annotations

import functools

from torch import nn

# Lazy and Sync variants subclass these; InstanceNorm/LayerNorm/GroupNorm do not.
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _eval_only_train(module: nn.Module, mode: bool = True) -> nn.Module:
    """Replacement for `module.train(mode)`: ignores `mode`, stays in eval mode."""
    return nn.Module.train(module, False)


def _batchnorms(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, _BATCHNORMS)]


def _is_frozen(bn: nn.Module) -> bool:
    train = bn.__dict__.get("train")
    return isinstance(train, functools.partial) and train.func is _eval_only_train


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Put every BatchNorm in `model` (itself included) in permanent eval mode; returns model.

    Running statistics stop updating and are used for normalisation in train mode too;
    weight/bias requires_grad is left as it was (trainable stays trainable). Idempotent.
    """
    for bn in _batchnorms(model):
        if not _is_frozen(bn):
            # A partial of a module-level function (not a closure or lambda) so the model
            # still pickles; deepcopy rebinds the partial's argument to the copied module.
            bn.train = functools.partial(_eval_only_train, bn)
        nn.Module.train(bn, False)
    return model


def unfreeze_batchnorm(model: nn.Module) -> nn.Module:
    """Undo `freeze_batchnorm`: BN layers follow train()/eval() again, starting in the mode of
    their parent model (`model.training`). Returns model."""
    for bn in _batchnorms(model):
        if _is_frozen(bn):
            del bn.train
        bn.train(model.training)
    return model


def is_batchnorm_frozen(model: nn.Module) -> bool:
    """True when `model` has at least one BatchNorm and all of them are frozen."""
    bns = _batchnorms(model)
    return bool(bns) and all(_is_frozen(bn) for bn in bns)
