"""The one divergence policy, method by method: a step whose loss is non-finite is never applied.
The run stops at that iteration with the in-memory weights those of the last good step, and last.pt
(written at the last checkpoint) stays byte for byte what it was."""
import importlib

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_DIGITS
from dualat.errors import DualatError
from dualat.training import train

SMALL = ["threads=1", "eval.evalnet_iterations=20", "eval.n_test=40", "eval.n_samples=20", "log.every=1",
         "log.checkpoint_every=2"]
# method -> (overrides, the stage module, the step function it calls, the iteration that is poisoned)
CASES = {
    "stage1": (TINY_DIGITS + SMALL + ["stage1.iterations=6", "stage2.iterations=2"], "stage1", "adversarial_step", 5),
    "plain": (TINY_DIGITS + SMALL + ["method=plain", "stage1.iterations=6"], "stage1", "plain_step", 5),
    "dat": (TINY_DIGITS + SMALL + ["stage1.iterations=2", "stage2.iterations=6", "eval.every=100"], "dat", "dat_step",
            5),
    "jem": (SMALL + ["method=jem", "jem.iterations=6", "jem.batch_size=8", "jem.buffer_size=32", "jem.sgld_steps=2",
                     "eval.every=100"], "jem", "jem_step", 5),
}


@pytest.mark.parametrize("method", sorted(CASES))
def test_a_non_finite_loss_is_never_applied(method, tmp_path, monkeypatch):
    overrides, module, name, poisoned_at = CASES[method]
    stage = importlib.import_module(f"dualat.training.{module}")
    real_step, seen = getattr(stage, name), {"calls": 0}
    out = tmp_path / method

    def poisoned(model, *args, **kwargs):
        seen["calls"] += 1
        if seen["calls"] != poisoned_at:
            return real_step(model, *args, **kwargs)
        # the weights of the last good step, and the checkpoint written before this one
        seen["model"], seen["good"] = model, {k: p.detach().clone() for k, p in model.named_parameters()}
        seen["last.pt"] = (out / "last.pt").read_bytes()
        real_ce = F.cross_entropy
        monkeypatch.setattr(F, "cross_entropy", lambda *a, **k: real_ce(*a, **k) * float("nan"))
        try:
            return real_step(model, *args, **kwargs)
        finally:
            monkeypatch.setattr(F, "cross_entropy", real_ce)

    monkeypatch.setattr(stage, name, poisoned)
    with pytest.raises(DualatError, match=r"diverged at iteration \d+ .*nan"):
        train("digits", overrides, out=out, show_progress=False)
    assert "good" in seen, "the poisoned step was never reached"
    now = dict(seen["model"].named_parameters())
    assert all(torch.equal(now[k], v) for k, v in seen["good"].items())   # no weight moved
    assert (out / "last.pt").read_bytes() == seen["last.pt"]                 # the last good checkpoint kept
