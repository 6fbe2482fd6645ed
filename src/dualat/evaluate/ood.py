"""Out-of-distribution detection: AUROC of the model's scores, test set (positive) vs OOD sets.

Scores (higher = more in-distribution): logsumexp f(x) = -E(x), and the maximum softmax
probability. OOD sets: uniform noise, held-out natural-image patches (the test split of the
`patches` seed source, never used for training seeds), and the sibling dataset when its files
can be read (fashion_mnist <-> mnist, cifar10 <-> cifar100). The adversarial variant pushes
each OOD input toward the in-distribution inside an L2 ball (PGD with the project's engine,
ascending logsumexp) before the scores are recomputed: a detector an attacker can fool with a
small perturbation shows a lower adversarial AUROC.
"""
from __future__ import annotations

import torch

from ..data import load_dataset, make_seed_source
from ..energy import energy
from ..errors import DualatError
from ..metrics import auroc
from ..pgd import L2Ball, eval_mode, pgd
from ..ui import progress

SIBLINGS = {"fashion_mnist": "mnist", "mnist": "fashion_mnist", "cifar10": "cifar100", "cifar100": "cifar10"}
SCORES = ("logsumexp", "max_softmax")


@torch.no_grad()
def ood_scores(model, x, batch_size: int = 500, n: int | None = None) -> dict[str, torch.Tensor]:
    """x (N, ...) in [0, 1], or a dataset (its first n items, None = all) ->
    {'logsumexp': (N,), 'max_softmax': (N,)} on the CPU (eval mode)."""
    device = next(model.parameters()).device
    is_dataset = hasattr(x, "batch")
    total = (len(x) if n is None else min(n, len(x))) if is_dataset else x.shape[0]
    lse, msp = [], []
    with eval_mode(model):
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            xb = x.batch(torch.arange(start, stop))[0] if is_dataset else x[start:stop]
            logits = model(xb.to(device)).float()
            lse.append(-energy(logits).cpu())
            msp.append(torch.softmax(logits, 1).amax(1).cpu())
    return {"logsumexp": torch.cat(lse), "max_softmax": torch.cat(msp)}


def ood_sets(cfg, shape: tuple, n: int, seed: int = 0, root: str | None = None) -> tuple[dict, dict]:
    """({name: float32 (n, *shape) in [0, 1]}, {name: why it was skipped}) for a run's config.

    `root` is where the sibling dataset's files live (default the run's data.root).
    """
    g = torch.Generator().manual_seed(seed)
    sets, skipped = {"uniform_noise": torch.rand(n, *shape, generator=g)}, {}
    try:
        sets["patches"] = make_seed_source("patches", shape, "test").sample(n, None, g)
    except DualatError as exc:
        skipped["patches"] = str(exc)
    sibling = SIBLINGS.get(cfg.data.name)
    if sibling is None:
        skipped["other_dataset"] = f"no sibling dataset is defined for {cfg.data.name}"
        return sets, skipped
    errors = []
    # the given folder, the run's folder, then the sibling's default location (Debian's Fashion-MNIST)
    for where in dict.fromkeys([root, cfg.data.root, None]):
        try:
            other = load_dataset(sibling, "test", root=where, image_size=shape[-1], channels=shape[0])
        except DualatError as exc:
            errors.append(str(exc))
            continue
        sets[sibling] = other.batch(torch.arange(min(n, len(other))))[0]
        return sets, skipped
    skipped[sibling] = f"unavailable ({errors[-1][:200]}); give its folder with --ood-root DIR"
    return sets, skipped


def push_to_distribution(model, x: torch.Tensor, eps: float, steps: int = 20, step_size: float | None = None,
                         batch_size: int = 250, show_progress: bool = False, desc: str = "adversarial OOD"):
    """OOD inputs (N, ...) moved inside the L2 ball of radius eps to maximise logsumexp f(x)."""
    device = next(model.parameters()).device
    step_size = step_size or 2.5 * eps / steps
    out = []
    bar = progress(x.shape[0], 0, desc, show_progress)
    with eval_mode(model):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size].to(device)
            out.append(pgd(model, xb, None, objective="logsumexp", threat=L2Ball(eps), steps=steps,
                           step_size=step_size).cpu())
            bar.update(xb.shape[0])
    bar.close()
    return torch.cat(out)


def ood_auroc(model, in_x, sets: dict[str, torch.Tensor], adv_eps: float | None = None, adv_steps: int = 20,
              n_in: int | None = None, show_progress: bool = False) -> dict[str, dict[str, float]]:
    """{set: {score: AUROC, 'adv_' + score: AUROC after the L2 push (when adv_eps)}}.

    in_x: in-distribution images (positives), a tensor or a dataset (first n_in items);
    sets: OOD images (negatives) by name.
    """
    pos = ood_scores(model, in_x, n=n_in)
    out = {}
    for name, x in sets.items():
        neg = ood_scores(model, x)
        row = {s: auroc(pos[s], neg[s]) for s in SCORES}
        if adv_eps:
            x_adv = push_to_distribution(model, x, adv_eps, adv_steps, show_progress=show_progress,
                                         desc=f"adversarial OOD {name}")
            adv = ood_scores(model, x_adv)
            row.update({f"adv_{s}": auroc(pos[s], adv[s]) for s in SCORES})
        out[name] = row
    return out


__all__ = ["ood_scores", "ood_sets", "push_to_distribution", "ood_auroc", "SIBLINGS", "SCORES"]
