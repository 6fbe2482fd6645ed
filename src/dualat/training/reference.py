"""The DAT step written the straightforward way: the structure of the authors' released code.

NOT a user path. It exists so that tests can check the library's `dat_step` against it (same
losses, gradients, AUC) and so that `python -m benchmarks.run` can time the two side by side.
Same algorithm and the same PGD engine calls in the same order (so the same random numbers);
only the structure differs:

- three separate training forwards, for the real, contrastive and adversarial batches;
- a separate no-grad, eval-mode forward of the real and contrastive batches for the AUC
  (taken before the weight update, so it sees the weights the loss saw, as `dat_step`'s does);
- one `.item()` per reported number.

The benchmark runs it in the default memory format and glibc's default allocator behaviour,
as a plain script would. It assumes stage 2's frozen BatchNorm (then eval-mode and
train-mode forwards agree and the AUC matches `dat_step`'s).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import AttackConfig, Stage2Config
from ..energy import energy
from ..metrics import auroc
from ..pgd import eval_mode
from .common import maybe
from .steps import adversarial_examples, contrastive_samples


def _score(logits: torch.Tensor, y: torch.Tensor, objective: str) -> torch.Tensor:
    """The sampler's objective per sample: logsumexp (unconditional) or f_y."""
    if objective == "logsumexp":
        return -energy(logits)
    return logits.gather(1, y.view(-1, 1)).squeeze(1)


def reference_dat_step(model, opt, real, seeds, at_batch, T: int, s2: Stage2Config, generator=None,
                       autocast=None, *, threat: AttackConfig) -> dict:
    """Same arguments and returned floats as `training.steps.dat_step`."""
    x_real, y_real = real
    x_at, y_at = at_batch
    x_con = contrastive_samples(model, seeds, y_real, T, s2.step_size, s2.objective, autocast)
    x_adv = adversarial_examples(model, x_at, y_at, threat, generator, autocast)
    model.train()
    with maybe(autocast):
        logits_real = model(x_real).float()
        logits_con = model(x_con).float()
        logits_adv = model(x_adv).float()
    s_real = -energy(logits_real)
    s_con = -energy(logits_con)
    bce = F.binary_cross_entropy_with_logits(torch.cat([s_real, s_con]),
                                             torch.cat([torch.ones_like(s_real), torch.zeros_like(s_con)]))
    ce = F.cross_entropy(logits_adv, y_at)
    loss = bce + ce
    with torch.no_grad(), eval_mode(model), maybe(autocast):
        auc = auroc(_score(model(x_real).float(), y_real, s2.objective),
                    _score(model(x_con).float(), y_real, s2.objective))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"loss": loss.item(), "bce": bce.item(), "ce": ce.item(),
            "adv_acc": (logits_adv.argmax(1) == y_at).float().mean().item(), "auc": auc,
            "e_real": -s_real.mean().item(), "e_contrastive": -s_con.mean().item()}
