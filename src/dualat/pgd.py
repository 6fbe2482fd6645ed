"""THE one PGD engine: an objective to ascend x a threat model that shapes and bounds each step.

Adversarial training (ce, L2/Linf ball), contrastive samples and generation (class_logit or
logsumexp, unbounded), counterfactuals (target_confidence, L2 ball) and robust evaluation all
run `pgd()`. Threat models follow MadryLab's attack steps: `step`, `project`, `random_perturb`,
with one signature each. Images are (B, C, H, W) in [0, 1]; every threat keeps them there.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from .energy import energy, joint_energy
from .errors import DualatError
from .speed import forward_of


def _per_sample_norm(g: torch.Tensor) -> torch.Tensor:
    """L2 norm of each sample, shaped to broadcast against g."""
    flat = g.flatten(1).norm(dim=1)
    return flat.view(-1, *([1] * (g.dim() - 1)))


def _per_sample(v, like: torch.Tensor):
    """A float, or one value per sample (B,) shaped to broadcast against `like`."""
    return v.view(-1, *([1] * (like.dim() - 1))) if torch.is_tensor(v) else v


class ThreatModel:
    """How a gradient becomes a step, and which set the iterate is projected back onto."""
    eps: float = math.inf

    def step(self, x: torch.Tensor, g: torch.Tensor, step_size: float) -> torch.Tensor:
        raise NotImplementedError

    def project(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def random_perturb(self, x0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError


class L2Ball(ThreatModel):
    """||x - x0||_2 <= eps per sample, steps along the L2-normalised gradient.

    eps: one budget, or a (B,) tensor of per-sample budgets (counterfactual radius sweeps).
    """

    def __init__(self, eps):
        self.eps = eps if torch.is_tensor(eps) else float(eps)

    def step(self, x, g, step_size):
        return x + _per_sample(step_size, x) * g / (_per_sample_norm(g) + 1e-12)

    def project(self, x, x0):
        delta = x - x0
        scale = torch.clamp(_per_sample(self.eps, x) / (_per_sample_norm(delta) + 1e-12), max=1.0)
        return torch.clamp(x0 + delta * scale, 0.0, 1.0)

    def random_perturb(self, x0, generator):
        # uniform direction, radius uniform in [0, eps] (as in MadryLab's L2 step)
        d = torch.randn(x0.shape, generator=generator, device="cpu").to(x0.device, x0.dtype)
        d = d / (_per_sample_norm(d) + 1e-12)
        r = torch.rand((x0.shape[0],), generator=generator, device="cpu").to(x0.device, x0.dtype)
        return self.project(x0 + d * _per_sample(self.eps, x0) * r.view(-1, *([1] * (x0.dim() - 1))), x0)


class LinfBall(ThreatModel):
    """max |x - x0| <= eps, steps along the gradient's sign."""

    def __init__(self, eps: float):
        self.eps = float(eps)

    def step(self, x, g, step_size):
        return x + step_size * torch.sign(g)

    def project(self, x, x0):
        return torch.clamp(torch.min(torch.max(x, x0 - self.eps), x0 + self.eps), 0.0, 1.0)

    def random_perturb(self, x0, generator):
        u = torch.rand(x0.shape, generator=generator, device="cpu").to(x0.device, x0.dtype)
        return self.project(x0 + (2 * u - 1) * self.eps, x0)


class Unbounded(ThreatModel):
    """No ball: L2-normalised steps, clipped to the image box [0, 1] only (DAT's generator)."""

    def step(self, x, g, step_size):
        return x + step_size * g / (_per_sample_norm(g) + 1e-12)

    def project(self, x, x0):
        return torch.clamp(x, 0.0, 1.0)

    def random_perturb(self, x0, generator):
        return x0


class Momentum(ThreatModel):
    """Another threat's ball and steps, along the average of the normalised gradients so far:
    v <- momentum x v + g / ||g|| (counterfactuals). Holds its velocity: one per pgd() call."""

    def __init__(self, threat: ThreatModel, momentum: float):
        self.threat, self.momentum, self.velocity = threat, float(momentum), None

    def step(self, x, g, step_size):
        g = g / (_per_sample_norm(g) + 1e-12)
        self.velocity = g if self.velocity is None else self.momentum * self.velocity + g
        return self.threat.step(x, self.velocity, step_size)

    def project(self, x, x0):
        return self.threat.project(x, x0)

    def random_perturb(self, x0, generator):
        return self.threat.random_perturb(x0, generator)


def make_threat(norm: str | None, eps: float | None = None) -> ThreatModel:
    """'L2' / 'Linf' with a budget, or None / 'unbounded'."""
    if norm is None or norm.lower() == "unbounded":
        return Unbounded()
    if eps is None or not eps > 0:
        raise DualatError(f"a {norm} threat model needs a positive epsilon, got {eps}")
    if norm.upper() == "L2":
        return L2Ball(eps)
    if norm.lower() == "linf":
        return LinfBall(eps)
    raise DualatError(f"unknown norm {norm!r}; use L2, Linf or unbounded")


# Objectives: per-sample values (B,) that PGD ascends. `y` is the true label (ce) or the
# class to move toward (class_logit, target_confidence).
def _ce(logits, y):
    return F.cross_entropy(logits, y, reduction="none")


def _class_logit(logits, y):
    return -joint_energy(logits, y)


def _logsumexp(logits, y):
    return -energy(logits)


def _target_confidence(logits, y):
    # log p(target|x): under per-sample normalised (or sign) steps it moves x exactly as
    # p(target|x) itself would, and it does not vanish when the confidence is tiny.
    return torch.log_softmax(logits, dim=1).gather(1, y.view(-1, 1)).squeeze(1)


OBJECTIVES = {
    "ce": _ce,
    "class_logit": _class_logit,
    "logsumexp": _logsumexp,
    "target_confidence": _target_confidence,
}


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Run in eval mode, then restore the previous mode (BN freezing survives via .train())."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def input_grad_only(model: torch.nn.Module):
    """Switch off parameter gradients so a PGD pass builds no weight-gradient graph."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def pgd(model, x0: torch.Tensor, y: torch.Tensor | None = None, *, objective: str = "ce",
        threat: ThreatModel | None = None, steps: int = 10, step_size: float = 0.1,
        random_start: bool | torch.Generator = False, callback=None, autocast=None) -> torch.Tensor:
    """Ascend `objective` from x0 for `steps` steps inside `threat`; returns detached x.

    x0: (B, ...) in [0, 1]; y: (B,) int64 (ignored by logsumexp). The model's mode is the
    caller's choice (eval for generation, contrastive samples and attacks). step_size is a float,
    or a (B,) tensor of per-sample steps for L2Ball (radius sweeps). random_start: False (start at
    x0), True (a random point of the threat's ball from the global RNG) or a torch.Generator to
    draw it from. Momentum (counterfactuals) is a threat: Momentum(L2Ball(r), 0.9).
    `callback(i, x)` sees each iterate;
    `autocast` is an optional context-manager factory (bf16, dualat.precision): only the model's
    forward runs under it; the objective, the float32 input gradient, its per-sample
    normalisation, the step and the projection stay float32. No host synchronisation happens
    inside the loop.
    """
    if objective not in OBJECTIVES:
        raise DualatError(f"unknown PGD objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    if objective != "logsumexp" and y is None:
        raise DualatError(f"PGD objective {objective} needs labels y")
    fn = OBJECTIVES[objective]
    threat = threat or Unbounded()
    x0 = x0.detach()
    if isinstance(random_start, torch.Generator):
        x = threat.random_perturb(x0, random_start)
    else:
        x = threat.random_perturb(x0, None) if random_start else x0.clone()
    net = forward_of(model)  # the compiled forward when model.compile is on
    with input_grad_only(model):
        for i in range(steps):
            x.requires_grad_(True)
            with autocast() if autocast else contextlib.nullcontext():
                logits = net(x).float()  # float32 logits: the objective never sees bf16
            value = fn(logits, y).float().sum()
            (g,) = torch.autograd.grad(value, x)
            with torch.no_grad():
                x = threat.project(threat.step(x.detach(), g, step_size), x0)
            if callback is not None:
                callback(i + 1, x)
    return x.detach()
