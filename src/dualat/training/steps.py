"""One optimisation step of each training method; the loops in stage1.py / dat.py call these.

Every step follows the one divergence policy (training/loop.py): its metrics reach the host in one
copy *before* `opt.step()`, the rig's `guard` sees them there (and raises Diverged on a bad loss),
so a diverging step never moves a weight.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import AttackConfig, Stage2Config
from ..energy import energy
from ..metrics import auroc
from ..models import is_batchnorm_frozen
from ..pgd import Unbounded, eval_mode, make_threat, pgd
from ..speed import forward_of
from .common import maybe


@dataclass
class StepRig:
    """How a step runs, beside what it computes.

    autocast: context-manager factory for bf16 forwards (dualat.precision), or None;
    trainer: the module for the training forward (the DistributedDataParallel wrapper of the model
    under torchrun; PGD always runs on the model itself); gather(t (2, B)) -> (2, world x B):
    every process's AUC scores (DAT, under torchrun); guard(metrics) -> metrics: called on the
    host metrics before the optimiser step; it may average them over processes and raises
    Diverged on a bad loss, so that step is never applied.
    """
    autocast: Callable | None = None
    trainer: torch.nn.Module | None = None
    gather: Callable | None = None
    guard: Callable[[dict], dict] | None = None

    def check(self, metrics: dict) -> dict:
        return self.guard(metrics) if self.guard is not None else metrics


FAST_STEP = 1.25  # x eps: the single step of "fast" adversarial training (Wong, Rice & Kolter 2020)


def attack_steps(attack: AttackConfig) -> tuple[int, float]:
    """(steps, step size) of an attack: its own, or 1 step of 1.25 x eps with attack.fast."""
    return (1, FAST_STEP * attack.eps) if attack.fast else (attack.steps, attack.step_size)


def adversarial_examples(model, x, y, attack: AttackConfig, generator=None, autocast=None):
    """Untargeted PGD on cross-entropy inside the attack's ball, model in eval mode."""
    steps, step_size = attack_steps(attack)
    # a random start drawn from `generator` (the global RNG without one), or none
    start = (generator if generator is not None else True) if attack.random_start else False
    with eval_mode(model):
        return pgd(model, x, y, objective="ce", threat=make_threat(attack.norm, attack.eps), steps=steps,
                   step_size=step_size, random_start=start, autocast=autocast)


def contrastive_samples(model, seeds, y, steps: int, step_size: float, objective: str = "class_logit",
                        autocast=None):
    """DAT's generator: `steps` unbounded L2-normalised ascent steps on f_y (or logsumexp) from the seeds."""
    with eval_mode(model):
        return pgd(model, seeds, y, objective=objective, threat=Unbounded(), steps=steps, step_size=step_size,
                   autocast=autocast)


def adversarial_step(model, opt, x, y, attack: AttackConfig, generator=None, rig: StepRig | None = None) -> dict:
    """Madry adversarial training: cross-entropy on PGD examples only (no clean term)."""
    rig = rig or StepRig()
    x_adv = adversarial_examples(model, x, y, attack, generator, rig.autocast)

    def guard(m: dict) -> dict:  # the metrics under their adversarial names, checked before the step
        return rig.check({"loss": m["loss"], "adv_acc": m["acc"]})

    return plain_step(model, opt, x_adv, y, replace(rig, guard=guard))


def plain_step(model, opt, x, y, rig: StepRig | None = None) -> dict:
    """Cross-entropy training on the batch as given: clean images for the study's plain
    (non-robust) baseline, PGD examples inside adversarial_step. Returns rig.check(metrics)."""
    rig = rig or StepRig()
    model.train()
    with maybe(rig.autocast):
        logits = (rig.trainer or forward_of(model))(x)
    loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():  # one synchronisation for both numbers, before the step
        loss_v, acc_v = torch.stack([loss.detach(), (logits.argmax(1) == y).float().mean()]).tolist()
    metrics = rig.check({"loss": loss_v, "acc": acc_v})
    opt.step()
    return metrics


def dat_step(model, opt, real, seeds, at_batch, T: int, s2: Stage2Config, generator=None,
             rig: StepRig | None = None, *, threat: AttackConfig) -> dict:
    """One Dual Adversarial Training step (method.md section 2-3).

    real: (x (B,...), y (B,)) for the BCE; seeds: (B, ...) auxiliary images in [0, 1];
    at_batch: (x, y) strongly augmented, for adversarial CE under `threat` (the run's threat
    model, cfg.threat). Contrastive samples take the real
    batch's labels. Returns rig.check of the floats loss, bce, ce, adv_acc, auc, e_real,
    e_contrastive. Under torchrun the rig's gather makes the AUC (and with it the curriculum)
    the global one on every process.
    """
    rig = rig or StepRig()
    x_con = contrastive_samples(model, seeds, real[1], T, s2.step_size, s2.objective, rig.autocast)
    return dat_update(model, opt, real, x_con, at_batch, s2, generator, rig, threat=threat)


def dat_update(model, opt, real, x_con, at_batch, s2: Stage2Config, generator=None, rig: StepRig | None = None, *,
               threat: AttackConfig) -> dict:
    """The training half of `dat_step`, given its contrastive samples x_con (B, ...), labelled
    with the real batch's labels: made from seeds by dat_step, or continued persistent chains
    (training/chains.py). Same arguments otherwise, and the same returned floats."""
    rig = rig or StepRig()
    autocast, trainer, gather = rig.autocast, rig.trainer, rig.gather
    x_real, y_real = real
    x_at, y_at = at_batch
    b = x_real.shape[0]
    x_adv = adversarial_examples(model, x_at, y_at, threat, generator, autocast)
    model.train()
    net = trainer or forward_of(model)
    with maybe(autocast):
        if is_batchnorm_frozen(model):
            # frozen BN makes every sample independent of its batch: one fused pass serves all three
            logits = net(torch.cat([x_real, x_con, x_adv])).float()
            logits_gen, logits_adv = logits[: 2 * b], logits[2 * b:]
        else:
            # active BN (ablation): keep the batches' statistics apart, as the authors' code does
            logits_gen = torch.cat([net(x_real), net(x_con)]).float()
            logits_adv = net(x_adv).float()
    s = -energy(logits_gen)
    target = torch.cat([torch.ones(b, device=s.device), torch.zeros(b, device=s.device)])
    bce = F.binary_cross_entropy_with_logits(s, target)
    ce = F.cross_entropy(logits_adv, y_at)
    loss = bce + ce
    opt.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        # the AUC reuses the logits the loss already computed (the sampler's score: f_y or logsumexp)
        if s2.objective == "logsumexp":
            score = s.detach()
        else:
            score = logits_gen.detach().gather(1, torch.cat([y_real, y_real]).view(-1, 1)).squeeze(1)
        acc = (logits_adv.argmax(1) == y_at).float().mean()
        pair = torch.stack([score[:b], score[b:]]).float()
        if gather is not None:  # under torchrun: every process's scores, so the AUC is the global one
            pair = gather(pair)
        # one device-to-host copy for every statistic (each .item() would be a synchronisation)
        stats = torch.stack([loss.detach(), bce.detach(), ce.detach(), acc, -s[:b].mean(), -s[b:].mean()])
        host = torch.cat([stats, pair.flatten()]).cpu()
    n = pair.shape[1]
    auc = auroc(host[6:6 + n], host[6 + n:])
    loss_v, bce_v, ce_v, acc_v, e_real, e_con = host[:6].tolist()
    metrics = rig.check({"loss": loss_v, "bce": bce_v, "ce": ce_v, "adv_acc": acc_v, "auc": auc,
                         "e_real": e_real, "e_contrastive": e_con})
    opt.step()  # after the guard: a diverging step never reaches the weights
    return metrics
