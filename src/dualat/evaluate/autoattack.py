"""Robust accuracy under AutoAttack (Croce & Hein 2020), the official code from PyPI `pyautoattack`.

The model is wrapped so AutoAttack sees what it expects: inputs in [0, 1] -> logits (our models
normalise inside), eval mode, parameter gradients off (only input gradients are needed). Load
the model with its EMA weights (`load_model(..., "ema")`), the weights also used for sampling.
Images are attacked in chunks of AA_BATCH images so a progress bar can follow; every attack in
AutoAttack works per image, so chunking does not change what is measured.
"""
from __future__ import annotations

import torch

from ..errors import DualatError
from ..pgd import eval_mode, input_grad_only
from ..ui import progress

VERSIONS = ("standard", "rand", "custom")
ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")


class _Logits(torch.nn.Module):
    """x in [0, 1] -> float32 logits of the wrapped model, which stays in eval mode."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).float()


AA_SEED, AA_BATCH = 0, 250  # the protocol's AutoAttack seed (named in its text) and images per call


def _make(model, norm, eps, version, attacks, n_iter, num_classes, device):
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise DualatError("AutoAttack needs the PyPI package pyautoattack (the official code, no dependencies): "
                          "pip install pyautoattack") from None
    if version not in VERSIONS:
        raise DualatError(f"unknown AutoAttack version {version!r}; use one of {', '.join(VERSIONS)}")
    if version == "custom":
        attacks = list(attacks or ["apgd-ce"])
        bad = [a for a in attacks if a not in ATTACKS]
        if bad:
            raise DualatError(f"unknown AutoAttack attack(s) {bad}; choose from {', '.join(ATTACKS)}")
    elif attacks:
        raise DualatError(f"AutoAttack version {version} fixes its attacks; use version custom to choose them")
    aa = AutoAttack(_Logits(model), norm=norm, eps=eps, version=version,
                    attacks=attacks if version == "custom" else None, seed=AA_SEED, device=device)
    # the standard version targets the 9 runner-up classes; fewer exist with < 10 classes
    aa.apgd_targeted.n_target_classes = min(aa.apgd_targeted.n_target_classes, num_classes - 1)
    aa.fab.n_target_classes = min(aa.fab.n_target_classes, num_classes - 1)
    if n_iter is not None:  # a cheaper, NON-standard run (tests, smoke checks)
        aa.apgd.n_iter = aa.apgd_targeted.n_iter = aa.fab.n_iter = int(n_iter)
    return aa, attacks if version == "custom" else list(aa.attacks_to_run)


def autoattack_accuracy(model, dataset, n: int | None = 1000, norm: str = "L2", eps: float = 0.5,
                        version: str = "standard", attacks: list[str] | None = None, n_iter: int | None = None,
                        show_progress: bool = True, dist=None) -> dict:
    """AutoAttack on the first n test images (None = all).

    version: standard (APGD-CE, APGD-T, FAB-T, Square; the reported protocol), rand (APGD-CE and
    APGD-DLR with 20-sample EOT, for randomised defences) or custom with `attacks` (default
    ['apgd-ce']). n_iter overrides the iterations of APGD / APGD-T / FAB (non-standard).
    Returns dict(clean_acc, robust_acc, n, max_perturbation, attacks, protocol); the robust
    accuracy is re-measured on the returned adversarial images. dist (dualat.distributed.Dist,
    under torchrun): the chunks are shared round-robin between the processes and the counts summed.
    """
    if norm not in ("L2", "Linf"):
        raise DualatError(f"AutoAttack here runs L2 or Linf, got {norm!r}")
    device = next(model.parameters()).device
    n = len(dataset) if n is None else min(n, len(dataset))
    aa, used = _make(model, norm, eps, version, attacks, n_iter, dataset.num_classes, device)
    batch_size = AA_BATCH
    clean = robust = 0
    max_pert = 0.0
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    mine = sum(min(batch_size, n - s) for s in range(rank * batch_size, n, world * batch_size))
    bar = progress(mine, 0, f"AutoAttack {norm} eps={eps:.4g}", show_progress)
    with eval_mode(model), input_grad_only(model):
        for k, start in enumerate(range(0, n, batch_size)):
            if k % world != rank:
                continue
            x, y = dataset.batch(torch.arange(start, min(start + batch_size, n)))
            x, y = x.to(device), y.to(device)
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size)
            with torch.no_grad():
                clean += (model(x).argmax(1) == y).sum().item()
                robust += (model(x_adv).argmax(1) == y).sum().item()
            delta = (x_adv - x).flatten(1)
            size = delta.norm(dim=1) if norm == "L2" else delta.abs().amax(dim=1)
            max_pert = max(max_pert, float(size.max()))
            bar.update(len(y))
    bar.close()
    if dist is not None:
        clean, robust = round(dist.sum(clean)), round(dist.sum(robust))
        max_pert = max(dist.gather_objects(max_pert))
    iters = "" if n_iter is None else f", n_iter={n_iter} (NON-standard)"
    protocol = (f"AutoAttack ({version}: {', '.join(used)}{iters}), {norm} eps={eps:.6g}, first {n} test images, "
                f"seed {AA_SEED}, model in eval mode on [0,1] inputs")
    return {"clean_acc": clean / max(n, 1), "robust_acc": robust / max(n, 1), "n": n,
            "max_perturbation": max_pert, "attacks": used, "protocol": protocol}


__all__ = ["autoattack_accuracy", "VERSIONS", "ATTACKS"]
