"""threat.fast (written stage2.attack.fast in old configs): "fast" adversarial training, one step of 1.25 x eps from a random start
(off by default; a validated config key)."""
import pytest
import torch

from dualat.config import load_config
from dualat.errors import DualatError
from dualat.models import create_model
from dualat.training import steps


def test_fast_attack_is_off_by_default_and_validated():
    cfg = load_config("fashion_mnist")
    assert cfg.threat.fast is False and cfg.stage1.attack.fast is False
    assert steps.attack_steps(cfg.threat) == (cfg.threat.steps, cfg.threat.step_size)
    fast = load_config("fashion_mnist", ["stage2.attack.fast=true"]).threat   # the old key maps onto threat
    assert steps.attack_steps(fast) == (1, pytest.approx(1.25 * fast.eps)) and fast.random_start
    with pytest.raises(DualatError, match="threat.fast needs a random start"):
        load_config("fashion_mnist", ["stage2.attack.fast=true", "stage2.attack.random_start=false"])
    with pytest.raises(DualatError, match="threat.fast must be true or false"):
        load_config("fashion_mnist", ["stage2.attack.fast=yes please"])


@pytest.mark.parametrize("norm,eps", [("L2", 1.0), ("Linf", 0.1)])
def test_fast_attack_takes_one_step_from_a_random_start_inside_the_ball(norm, eps, monkeypatch):
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1, 8).eval()
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 10
    attack = load_config("digits", [f"stage2.attack.norm={norm}", f"stage2.attack.eps={eps}",
                                    "stage2.attack.fast=true"]).threat
    calls = []
    real = steps.pgd
    monkeypatch.setattr(steps, "pgd", lambda *a, **k: calls.append(k) or real(*a, **k))
    adv = steps.adversarial_examples(model, x, y, attack, torch.Generator().manual_seed(0))
    assert calls[0]["steps"] == 1 and calls[0]["step_size"] == pytest.approx(1.25 * eps) and calls[0]["random_start"]
    d = (adv - x).flatten(1)
    size = d.norm(dim=1) if norm == "L2" else d.abs().max(dim=1).values
    assert bool((size <= eps + 1e-5).all()) and bool((size > 0).all())
    assert adv.min() >= 0 and adv.max() <= 1
    # the random start makes the single step differ between draws
    adv2 = steps.adversarial_examples(model, x, y, attack, torch.Generator().manual_seed(1))
    assert not torch.equal(adv, adv2)
