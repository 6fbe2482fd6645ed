"""Energies and every PGD mode of the one engine."""
import torch
import torch.nn as nn

from dualat.energy import class_probs, energy, joint_energy
from dualat.pgd import L2Ball, LinfBall, Unbounded, make_threat, pgd
from dualat.errors import DualatError
import pytest


def tiny_model(seed=0, k=4, d=3 * 8 * 8):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 32), nn.Tanh(), nn.Linear(32, k)).eval()


def batch(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_energies_match_definitions():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(energy(logits), -torch.log(torch.exp(logits).sum(1)))
    assert torch.allclose(joint_energy(logits, torch.tensor([2, 0])), torch.tensor([-3.0, 0.0]))
    p = class_probs(logits)
    assert torch.allclose(p.sum(1), torch.ones(2))
    # E(x) <= E(x, y) for every y: logsumexp bounds each logit from above
    assert (energy(logits)[:, None] <= -logits + 1e-6).all()


@pytest.mark.parametrize("eps", [0.1, 0.5, 2.0])
def test_l2_attack_never_leaves_its_ball_and_box(eps):
    model = tiny_model()
    x, y = batch()
    seen = []
    adv = pgd(model, x, y, objective="ce", threat=L2Ball(eps), steps=15, step_size=eps / 2, random_start=torch.Generator().manual_seed(0), callback=lambda i, z: seen.append(z))
    for z in seen + [adv]:
        assert ((z - x).flatten(1).norm(dim=1) <= eps + 1e-5).all()
        assert z.min() >= 0 and z.max() <= 1


def test_linf_attack_stays_in_ball_and_raises_loss():
    model = tiny_model()
    x, y = batch(32)
    adv = pgd(model, x, y, objective="ce", threat=LinfBall(8 / 255), steps=10, step_size=2 / 255)
    assert ((adv - x).abs().amax(dim=(1, 2, 3)) <= 8 / 255 + 1e-6).all()
    ce = nn.functional.cross_entropy
    assert ce(model(adv), y) > ce(model(x), y)


def test_unbounded_steps_stay_in_box_and_raise_target_logit():
    model = tiny_model()
    x, y = batch(16)
    out = pgd(model, x, y, objective="class_logit", threat=Unbounded(), steps=20, step_size=0.5)
    assert out.min() >= 0 and out.max() <= 1
    before = model(x).gather(1, y[:, None]).squeeze(1)
    after = model(out).gather(1, y[:, None]).squeeze(1)
    assert (after > before).all()
    # per-sample normalised steps: one step moves each sample by exactly the step size (before clipping)
    mid = torch.full((4, 3, 8, 8), 0.5)
    one = pgd(model, mid, y[:4], objective="class_logit", steps=1, step_size=0.1)
    assert torch.allclose((one - mid).flatten(1).norm(dim=1), torch.full((4,), 0.1), atol=1e-5)


def test_targeted_confidence_rises_and_logsumexp_ascends():
    model = tiny_model()
    x, _ = batch(16)
    target = torch.full((16,), 2)
    out = pgd(model, x, target, objective="target_confidence", threat=L2Ball(3.0), steps=30, step_size=0.3)
    assert (class_probs(model(out))[:, 2] > class_probs(model(x))[:, 2]).all()
    gen = pgd(model, x, None, objective="logsumexp", steps=10, step_size=0.3)
    assert (energy(model(gen)) < energy(model(x))).all()


def test_pgd_leaves_parameters_without_grad_and_restores_flags():
    """Inside the attack (seen from its callback) no parameter asks for a gradient, so no
    weight-gradient graph is built; afterwards every flag is back as it was, a frozen one too."""
    model = tiny_model()
    params = list(model.parameters())
    params[0].requires_grad_(False)                  # a frozen parameter must stay frozen
    before = [p.requires_grad for p in params]
    x, y = batch()
    inside = []
    pgd(model, x, y, objective="ce", threat=L2Ball(0.5), steps=3, step_size=0.2,
        callback=lambda i, x: inside.append([p.requires_grad for p in params]))
    assert len(inside) == 3 and not any(any(flags) for flags in inside)
    assert [p.requires_grad for p in params] == before and all(p.grad is None for p in params)


def test_bad_threat_or_objective_is_a_clear_error():
    with pytest.raises(DualatError):
        make_threat("L3", 1.0)
    with pytest.raises(DualatError):
        make_threat("L2", -1.0)
    with pytest.raises(DualatError):
        pgd(tiny_model(), *batch(), objective="nope")
