"""The JEM baseline: SGLD update, replay buffer, divergence as an outcome, resume, evaluation."""
import json

import pytest
import torch
from torch import nn

from dualat.checkpoint import safe_load
from dualat.config import load_config
from dualat.errors import DualatError
from dualat.evaluate.run import evaluate
from dualat.sgld import InitialDistribution, ReplayBuffer, sgld
from dualat.training import train
from dualat.optim import learning_rate
from dualat.training.jem import jem_step, passes_per_iteration

TINY_JEM = ["method=jem", "jem.iterations=12", "jem.batch_size=16", "jem.buffer_size=64", "jem.sgld_steps=3",
            "jem.optim.warmup=2", "jem.optim.lr=1e-3", "eval.every=6", "eval.n_test=50", "eval.n_samples=30",
            "eval.pgd_steps=2", "eval.evalnet_iterations=60", "log.every=3", "log.checkpoint_every=6"]


class Quadratic(nn.Module):
    """One logit -||x||^2 / 2, so E(x) = ||x||^2 / 2 and grad E(x) = x."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return (-0.5 * x.flatten(1).pow(2).sum(1) + 0 * self.unused).unsqueeze(1)


def test_sgld_drift_follows_minus_half_alpha_grad_energy():
    x0 = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    x = sgld(Quadratic(), x0, steps=3, step_size=0.4, noise=0.0, clamp=False)
    assert torch.allclose(x, x0 * 0.8 ** 3, atol=1e-6)  # each step: x - 0.2 * x


def test_sgld_noise_has_the_configured_scale():
    x0 = torch.rand(512, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    x = sgld(Quadratic(), x0, steps=1, step_size=1e-9, noise=0.05, generator=g, clamp=False)
    d = x - x0
    assert abs(d.std().item() - 0.05) < 0.05 * 0.05      # 8,192 draws: relative error ~1 %
    assert abs(d.mean().item()) < 0.005
    clamped = sgld(Quadratic(), x0, steps=5, step_size=0.1, noise=1.0, generator=g, clamp=True)
    assert clamped.min() >= 0 and clamped.max() <= 1


def test_sgld_chains_are_reproducible_from_the_generator():
    x0 = torch.rand(4, 1, 4, 4)
    a = sgld(Quadratic(), x0, 4, 0.1, 0.1, torch.Generator().manual_seed(5))
    b = sgld(Quadratic(), x0, 4, 0.1, 0.1, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_buffer_restarts_chains_at_the_configured_rate():
    g = torch.Generator().manual_seed(0)
    buf = ReplayBuffer(1000, InitialDistribution("uniform", (1, 2, 2), 10), reinit_prob=0.05, generator=g)
    assert buf.images.min() >= 0 and buf.images.max() <= 1
    buf.images.fill_(2.0)                      # outside [0, 1]: a restarted chain is recognisable
    restarted = 0
    for _ in range(200):
        idx, starts = buf.draw(100, g)
        restarted += int((starts != 2.0).flatten(1).all(1).sum())
    assert restarted == buf.restarts
    assert abs(restarted / 20000 - 0.05) < 0.006  # binomial std 0.0015
    assert buf.draws == 20000


def test_buffer_put_and_state_roundtrip():
    g = torch.Generator().manual_seed(0)
    buf = ReplayBuffer(10, InitialDistribution("uniform", (3,), 2), 0.0, g)
    idx, starts = buf.draw(4, g)
    assert torch.equal(starts, buf.images[idx])  # no restarts at probability 0
    buf.put(idx, torch.full((4, 3), 0.25))
    assert (buf.images[idx] == 0.25).all()
    other = ReplayBuffer(10, InitialDistribution("uniform", (3,), 2), 0.0, torch.Generator())
    other.load_state_dict(buf.state_dict())
    assert torch.equal(other.images, buf.images) and other.draws == 4
    with pytest.raises(DualatError, match="shape"):
        ReplayBuffer(10, InitialDistribution("uniform", (4,), 2), 0.0, g).load_state_dict(buf.state_dict())


def test_jem_step_lowers_real_energy_relative_to_samples():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.rand(32, 1, 4, 4) * 0.5, torch.randint(0, 3, (32,))
    x_q = torch.rand(32, 1, 4, 4) * 0.5 + 0.5
    gaps = [jem_step(model, opt, (x, y), x_q, 1.0)["gen"] for i in range(20)]
    assert gaps[-1] < gaps[0] - 0.1   # gen = E(real) - E(samples) falls


def test_learning_rate_warmup_is_linear():
    o = load_config("digits", ["stage1.optim.warmup=4", "stage1.optim.lr=1.0", "stage1.optim.schedule=constant"]).stage1.optim
    assert [learning_rate(o, i, 100) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_jem_config_is_validated():
    cfg = load_config("fashion_mnist", ["method=jem"])
    budget = 36640 * 128  # the default DAT run's forward/backward image passes (preset comment)
    assert abs(passes_per_iteration(cfg.jem) * cfg.jem.iterations - budget) < passes_per_iteration(cfg.jem)
    for bad, key in [("jem.buffer_init=unifrom", "did you mean uniform"), ("jem.reinit_prob=1.5", "jem.reinit_prob"),
                     ("jem.buffer_size=8", "jem.buffer_size"), ("jem.sgld_step_size=0", "jem.sgld_step_size"),
                     ("method=jemm", "did you mean jem"), ("jem.batchnorm=on", "jem.batchnorm")]:
        with pytest.raises(DualatError, match=key):
            load_config("digits", [bad])


@pytest.fixture(scope="module")
def jem_run(tmp_path_factory):
    return train("digits", TINY_JEM, out=tmp_path_factory.mktemp("jem") / "run", show_progress=False)


def test_jem_run_writes_weights_buffer_and_counts_passes(jem_run):
    summary = json.loads((jem_run / "summary.json").read_text())["jem"]
    assert summary["diverged"] is None and summary["iterations_done"] == 12
    assert summary["passes"] == 12 * (3 + 2) * 16
    assert {"fd_buffer", "fd_fresh", "clean_acc", "robust_acc"} <= set(summary)
    assert safe_load(jem_run / "replay_buffer.safetensors")["images"].shape == (64, 1, 8, 8)
    assert (jem_run / "samples" / "buffer_000012.png").is_file() and (jem_run / "samples" / "fresh_000012.png").is_file()


def test_jem_resume_is_bit_exact(jem_run, tmp_path):
    short = train("digits", TINY_JEM + ["jem.iterations=6"], out=tmp_path / "r", show_progress=False)
    train(None, ["jem.iterations=12"], resume=short, show_progress=False)
    a, b = safe_load(jem_run / "last.pt"), safe_load(short / "last.pt")
    assert torch.equal(a["buffer"]["images"], b["buffer"]["images"])
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_eval_names_the_sampler(jem_run, tmp_path):
    kw = dict(robust=False, ood=False, calibrate=False, n_samples=30, k=3, is_splits=2, show_progress=False)
    buf = evaluate(jem_run, out=tmp_path / "b", **kw)
    assert buf["sampler"] == "buffer" and buf["checkpoint"]["checkpoint"] == "model"
    assert "replay buffer" in buf["generative_protocol"]
    fresh = evaluate(jem_run, sampler="sgld", steps=2, **kw)
    assert fresh["sampler"] == "sgld" and "fresh SGLD chains of 2 steps" in fresh["generative_protocol"]
    with pytest.raises(DualatError, match="sampler"):
        evaluate(jem_run, sampler="langevin", **kw)


def test_jem_divergence_follows_the_one_policy(tmp_path):
    out = tmp_path / "div"
    # an absurd learning rate with a tight bound: the losses pass the bound within a few steps
    with pytest.raises(DualatError, match=r"^JEM diverged at iteration \d+ .*jem\.optim\.lr=.*--resume") as err:
        train("digits", TINY_JEM + ["jem.optim.lr=10", "jem.optim.warmup=0", "jem.loss_bound=20",
                                    "log.checkpoint_every=1"], out=out, show_progress=False)
    assert "\n" not in str(err.value)
    info = json.loads((out / "diverged.json").read_text())
    assert info["iteration"] >= 2 and info["last_good_checkpoint"] == "last.pt"
    whole = json.loads((out / "summary.json").read_text())
    summary = whole["jem"]   # the work done still counts (the study's cost columns read it)
    assert whole["diverged"] == summary["diverged"] == info
    assert summary["iterations_done"] == info["iteration"] - 1
    assert summary["passes"] == summary["iterations_done"] * summary["passes_per_iteration"]
    good = safe_load(out / "last.pt")
    assert good["iteration"] == info["iteration"] - 1
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())
    assert not (out / "model.safetensors").exists()   # no final weights from a diverged run
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "diverged" for e in events)
    # the last good checkpoint still evaluates (weights and buffer from last.pt)
    r = evaluate(out, robust=False, ood=False, calibrate=False, n_samples=30, k=3, is_splits=2, show_progress=False)
    assert r["checkpoint"]["path"].endswith("last.pt")


def test_jem_with_active_batchnorm_and_gaussian_init_runs(tmp_path):
    out = train("digits", TINY_JEM + ["jem.iterations=4", "jem.batchnorm=active", "jem.buffer_init=gaussian",
                                      "eval.every=4"], out=tmp_path / "a", show_progress=False)
    summary = json.loads((out / "summary.json").read_text())["jem"]
    assert summary["diverged"] is None and summary["iterations_done"] == 4
    images = safe_load(out / "replay_buffer.safetensors")["images"]
    assert images.min() >= 0 and images.max() <= 1


def test_sweep_steps_runs_fresh_sgld_chains_and_refuses_the_buffer(jem_run):
    kw = dict(robust=False, ood=False, calibrate=False, n_samples=30, k=3, is_splits=2, show_progress=False)
    res = evaluate(jem_run, sampler="sgld", steps=2, sweep_steps=[1, 2, 4], **kw)
    sweep = res["generative_sweep"]
    assert sweep["sampler"] == "sgld" and [p["steps"] for p in sweep["points"]] == [1, 2, 4]
    for p in sweep["points"]:  # counted: one forward+backward per SGLD step, one forward for the label
        assert p["passes_per_image"] == p["steps"] and p["forward_only_per_image"] == 1
    assert sweep["points"][1]["fd"] == pytest.approx(res["fd"], rel=1e-9)  # same chains as the main number
    with pytest.raises(DualatError, match="--sampler sgld"):
        evaluate(jem_run, sweep_steps="2", **kw)
