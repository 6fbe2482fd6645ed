"""The library's fused DAT step computes what the straightforward (authors'-structure) step computes."""
import copy

import pytest
import torch

from dualat.config import load_config
from dualat.data import load_dataset
from dualat.models import create_model, freeze_batchnorm
from dualat.optim import make_optimizer
from dualat.training.common import EMA, Curriculum
from dualat.training.reference import reference_dat_step
from dualat.training.steps import dat_step

B = 32


def _model():
    """A digits small CNN with non-trivial BatchNorm statistics, then frozen (stage 2)."""
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1, 8)
    data = load_dataset("digits", "train")
    model.train()
    with torch.no_grad():
        for i in range(3):
            model(data.batch(torch.arange(i * 64, (i + 1) * 64))[0])
    return freeze_batchnorm(model)


def _batches(it: int):
    data = load_dataset("digits", "train")
    x, y = data.batch(torch.arange(it * B, (it + 1) * B))
    x_at, y_at = data.batch(torch.arange(500 + it * B, 500 + (it + 1) * B))
    seeds = torch.rand(B, 1, 8, 8, generator=torch.Generator().manual_seed(it))
    return (x, y), seeds, (x_at, y_at)


def _pair(channels_last: bool, objective: str = "class_logit"):
    cfg = load_config("digits", ["stage2.optim.lr=0.05", f"stage2.objective={objective}"])
    lib = _model()
    ref = copy.deepcopy(lib)
    if channels_last:
        lib = lib.to(memory_format=torch.channels_last)
    return cfg.stage2, lib, ref, cfg.threat


def _to(fmt, real, seeds, at):
    cl = lambda t: t.contiguous(memory_format=fmt)  # noqa: E731
    return (cl(real[0]), real[1]), cl(seeds), (cl(at[0]), at[1])


@pytest.mark.parametrize("channels_last,objective", [(False, "class_logit"), (True, "class_logit"),
                                                      (False, "logsumexp")])
def test_fused_step_matches_reference_losses_and_gradients(channels_last, objective):
    s2, lib, ref, threat = _pair(channels_last, objective)
    opt_lib, opt_ref = make_optimizer(lib.parameters(), s2.optim), make_optimizer(ref.parameters(), s2.optim)
    real, seeds, at = _batches(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    m_lib = dat_step(lib, opt_lib, *_to(fmt, real, seeds, at), 3, s2, torch.Generator().manual_seed(5), threat=threat)
    m_ref = reference_dat_step(ref, opt_ref, real, seeds, at, 3, s2, torch.Generator().manual_seed(5), threat=threat)
    assert m_lib.keys() == m_ref.keys()
    for key in m_ref:
        assert m_lib[key] == pytest.approx(m_ref[key], rel=1e-5, abs=1e-6), key
    for (name, p_lib), p_ref in zip(lib.named_parameters(), ref.parameters()):
        assert p_lib.grad is not None and p_ref.grad is not None, name
        scale = p_ref.grad.abs().max().item() + 1e-12
        assert (p_lib.grad - p_ref.grad).abs().max().item() <= 1e-4 * scale, name
        torch.testing.assert_close(p_lib, p_ref, rtol=1e-5, atol=1e-6)


def test_loop_state_matches_reference_after_a_few_iterations():
    """T, the AUC window and the EMA evolve the same through the loop pieces dat.py uses."""
    s2, lib, ref, threat = _pair(channels_last=True)
    states = []
    for model, step in ((lib, dat_step), (ref, reference_dat_step)):
        opt = make_optimizer(model.parameters(), s2.optim)
        ema = EMA(model, 0.9)
        cur = Curriculum(t_init=1, t_max=3, threshold=0.0, window=2)  # threshold 0: T rises every 2 iterations
        gen = torch.Generator().manual_seed(7)
        fmt = torch.channels_last if model is lib else torch.contiguous_format
        for it in range(5):
            m = step(model, opt, *_to(fmt, *_batches(it)), cur.T, s2, gen, threat=threat)
            ema.update(model)
            cur.update(m["auc"])
        states.append((cur.state_dict(), [p.detach().clone() for p in ema.model.parameters()], ema.updates))
    (cur_lib, ema_lib, n_lib), (cur_ref, ema_ref, n_ref) = states
    assert cur_lib["T"] == cur_ref["T"] == 3
    assert cur_lib["aucs"] == pytest.approx(cur_ref["aucs"], abs=1e-6) and len(cur_lib["aucs"]) == 1
    assert n_lib == n_ref == 5
    for a, b in zip(ema_lib, ema_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
