"""Training pieces: curriculum, EMA, the DAT step's sign convention, checkpoints, resume, presets."""
import json
from pathlib import Path

import pytest
import torch

from conftest import TINY_DIGITS
from dualat.checkpoint import atomic_save, load_weights, safe_load
from dualat.config import load_config
from dualat.data import load_dataset
from dualat.energy import energy
from dualat.errors import DualatError
from dualat.models import create_model, freeze_batchnorm
from dualat.training import train
from dualat.optim import make_optimizer
from dualat.training.common import EMA, Curriculum
from dualat.training.steps import dat_step


def test_curriculum_raises_t_only_when_window_mean_passes_threshold():
    c = Curriculum(t_init=0, t_max=2, threshold=0.8, window=3)
    assert not c.update(0.9) and not c.update(0.9)          # window not yet full
    assert c.update(0.9) and c.T == 1 and c.aucs == []      # full, mean 0.9 -> raise, clear
    for a in (0.9, 0.7, 0.75):                              # mean 0.783 < 0.8: no raise, window slides
        assert not c.update(a)
    assert c.T == 1
    assert c.update(0.96) and c.T == 2                      # (0.7+0.75+0.96)/3 = 0.803
    for _ in range(6):
        c.update(1.0)
    assert c.T == 2                                         # capped at t_max
    state = c.state_dict()
    d = Curriculum(0, 2, 0.8, 3)
    d.load_state_dict(state)
    assert d.T == c.T and d.aucs == c.aucs


def test_ema_warmup_then_decay():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)   # d = min(0.999, 1/10) = 0.1 -> 0.1*0 + 0.9*1
    assert ema.model.weight.item() == pytest.approx(0.9)
    ema.update(model)   # d = 2/11
    assert ema.model.weight.item() == pytest.approx(0.9 * 2 / 11 + 9 / 11)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    return train("digits", TINY_DIGITS, out=out, show_progress=False)


def _energies(model, *batches):
    model.eval()
    with torch.no_grad():
        return [energy(model(b)).mean().item() for b in batches]


def test_bce_sign_real_energy_falls_contrastive_energy_rises():
    """Exact signs on a bias-free linear energy whose real and contrastive inputs have disjoint
    pixel supports, so each half of the BCE moves only its own energies."""
    data = load_dataset("digits", "train")
    x, y = data.batch(torch.arange(64))
    x[..., 4:] = 0                                             # real: left half only
    seeds = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    seeds[..., :4] = 0                                         # contrastive: right half only
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10, bias=False))
    torch.nn.init.zeros_(model[1].weight)
    # a zero adversarial batch with a negligible budget adds no gradient to the weights
    cfg = load_config("digits", ["stage2.optim.lr=0.5", "stage2.optim.momentum=0", "stage2.optim.weight_decay=0",
                                 "stage2.attack.eps=1.0e-9", "stage2.attack.step_size=1.0e-9",
                                 "stage2.attack.random_start=false"])
    opt = make_optimizer(model.parameters(), cfg.stage2.optim)
    real0, con0 = _energies(model, x, seeds)
    dat_step(model, opt, (x, y), seeds, (torch.zeros_like(x), y), 0, cfg.stage2, threat=cfg.threat)
    real1, con1 = _energies(model, x, seeds)
    assert real1 < real0 and con1 > con0


def test_dat_step_separates_real_from_contrastive_energy(digits_run):
    """The fused, BN-frozen step on a stage-1 small CNN: the gap E(contrastive) - E(real) grows."""
    data = load_dataset("digits", "train")
    model = create_model("small_cnn", 10, 1, 8)
    model.load_state_dict(safe_load(digits_run / "stage1.pt")["model"])
    freeze_batchnorm(model)
    cfg = load_config("digits", ["stage2.optim.lr=0.05", "stage2.optim.momentum=0"])
    opt = make_optimizer(model.parameters(), cfg.stage2.optim)
    x, y = data.batch(torch.arange(64))
    seeds = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    real0, con0 = _energies(model, x, seeds)
    # T = 0: the contrastive samples are the seeds themselves
    m = dat_step(model, opt, (x, y), seeds, (x, y), 0, cfg.stage2, torch.Generator().manual_seed(1), threat=cfg.threat)
    real1, con1 = _energies(model, x, seeds)
    assert con1 - real1 > con0 - real0
    assert 0 <= m["auc"] <= 1 and m["loss"] == pytest.approx(m["bce"] + m["ce"], rel=1e-5)


def test_checkpoint_roundtrip_and_foreign_prefixes(tmp_path):
    model = create_model("small_cnn", 10, 1, 8)
    path = atomic_save({"model": model.state_dict(), "iteration": 3, "note": "x"}, tmp_path / "c.pt")
    back = safe_load(path)
    assert back["iteration"] == 3 and all(torch.equal(back["model"][k], v) for k, v in model.state_dict().items())
    assert not list(tmp_path.glob(".*.tmp"))
    other = create_model("small_cnn", 10, 1, 8)
    prefixed = {"module." + k: v for k, v in model.state_dict().items()}
    report = load_weights(other, prefixed)
    assert report["missing"] == [] and report["unexpected"] == []
    assert all(torch.equal(other.state_dict()[k], v) for k, v in model.state_dict().items())


def test_checkpoint_refuses_code_and_truncation(tmp_path):
    import os
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(DualatError, match="refused"):
        safe_load(evil)
    assert not marker.exists()
    good = atomic_save({"w": torch.ones(1000)}, tmp_path / "good.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DualatError, match="truncated"):
        safe_load(cut)


def test_end_to_end_digits_writes_a_complete_run(digits_run):
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "stage1.pt", "best_fid.pt", "best_robust.pt",
                 "model_ema.safetensors", "summary.json"):
        assert (digits_run / name).is_file(), name
    summary = json.loads((digits_run / "summary.json").read_text())
    assert summary["stage1"]["clean_acc"] > 0.7
    assert summary["stage2"]["T_final"] > 2                 # the curriculum moved T up
    assert list((digits_run / "samples").glob("samples_*.png"))
    records = [json.loads(l) for l in (digits_run / "metrics.jsonl").read_text().splitlines()]
    stage2 = [r for r in records if r.get("stage") == 2 and "bce" in r]
    assert stage2 and all({"bce", "ce", "auc", "T", "e_real", "e_contrastive"} <= r.keys() for r in stage2)
    last = safe_load(digits_run / "last.pt")
    assert last["stage"] == 2 and last["iteration"] == 20 and "ema" in last and "curriculum" in last


def test_resume_continues_bit_exactly(digits_run, tmp_path):
    short = train("digits", TINY_DIGITS + ["stage2.iterations=10"], out=tmp_path / "r", show_progress=False)
    train(None, ["stage2.iterations=20"], resume=short, show_progress=False)
    a, b = safe_load(digits_run / "last.pt"), safe_load(short / "last.pt")
    assert a["curriculum"] == b["curriculum"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k, v in a["ema"]["model"].items():
        assert torch.equal(v, b["ema"]["model"][k]), k


def test_the_log_says_which_code_wrote_it(digits_run):
    import dualat
    start = json.loads((digits_run / "metrics.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["dualat"] == dualat.__version__
    if (Path(dualat.__file__).parents[2] / ".git").exists():   # a checkout: the commit too
        assert len(start["commit"].split("+")[0]) == 12


def test_existing_run_directory_is_never_overwritten(digits_run):
    before = (digits_run / "last.pt").read_bytes()
    with pytest.raises(DualatError, match="--resume"):
        train("digits", TINY_DIGITS, out=digits_run, show_progress=False)
    assert (digits_run / "last.pt").read_bytes() == before


def test_divergence_stops_cleanly_and_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "div"
    with pytest.raises(DualatError, match="diverged") as err:
        train("digits", TINY_DIGITS + ["stage2.optim.lr=1.0e+6", "stage2.loss_bound=50"], out=out,
              show_progress=False)
    assert "--resume" in str(err.value)
    info = json.loads((out / "diverged.json").read_text())
    assert info["stage"] == 2 and "stage2.optim.lr=" in str(err.value)
    summary = json.loads((out / "summary.json").read_text())   # the one policy: recorded beside the work done
    assert summary["diverged"] == info and summary["stage1"]["clean_acc"] >= 0 and "stage2" not in summary
    good = safe_load(out / "last.pt")
    assert good["stage"] == 1                          # the stage-1 checkpoint was not overwritten
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())


GPU_PRESETS = {
    "cifar10_wrn34": ["data.image_size=32", "data.num_classes=10"],
    "cifar100_wrn34": ["data.image_size=32", "data.num_classes=100"],
    "imagenet256_resnet50": ["data.image_size=64", "data.num_classes=1000"],
}


@pytest.mark.parametrize("preset", sorted(GPU_PRESETS))
def test_gpu_presets_run_a_few_iterations_on_fake_data(preset, tmp_path):
    tiny = ["data.name=fake", "data.channels=3", "data.seeds=noise", "device=cpu", "stage1.iterations=1",
            "stage1.batch_size=2", "stage2.batch_size=2", "stage2.iterations=2", "stage2.t_init=1",
            "stage1.attack.steps=1", "stage2.attack.steps=1", "eval.n_test=2", "eval.n_samples=4",
            "eval.pgd_steps=1", "eval.evalnet_iterations=2", "eval.step_sweep_samples=10", "log.every=1",
            "model.channels_last=false",
            # after a single stage-1 step the frozen BN statistics are meaningless; CIFAR-100's
            # lr 1e-2 then blows up a random WRN-34-10 (the divergence check catches it)
            "stage2.optim.lr=1.0e-3"]
    run = train(preset, GPU_PRESETS[preset] + tiny, out=tmp_path / preset, show_progress=False)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stage2"]["T_final"] >= 1
    assert (run / "model_ema.safetensors").is_file()


def test_resume_of_a_run_killed_after_its_last_checkpoint_reports_the_same_summary(digits_run, tmp_path):
    """Killed after the final last.pt but before summary.json: resuming has nothing left to train
    and must still report the final evaluation (kept in last.pt), not an empty one."""
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(digits_run, copy)
    (copy / "summary.json").unlink()
    train(None, resume=copy, show_progress=False)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (digits_run, copy))
    for s in (a, b):
        s.pop("run_dir"), s.pop("wall_s_this_session"), s["stage1"].pop("wall_s"), s["stage2"].pop("wall_s")
    assert a == b and "fd" in b["stage2"]


def test_a_nan_parameter_stops_the_run_naming_the_iteration_and_keeps_every_checkpoint(tmp_path, monkeypatch):
    """A step that leaves NaN in a weight while its loss still looks finite: the run stops at that
    iteration, before an evaluation could write best_*.pt, and last.pt stays the previous good one."""
    import importlib
    dat = importlib.import_module("dualat.training.dat")
    real_step, calls = dat.dat_step, []

    def poisoned(model, *args, **kwargs):
        out = real_step(model, *args, **kwargs)
        calls.append(1)
        if len(calls) == 4:
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = float("nan")
        return out

    monkeypatch.setattr(dat, "dat_step", poisoned)
    out = tmp_path / "nan"
    args = TINY_DIGITS + ["stage1.iterations=6", "stage2.iterations=8", "eval.every=1", "log.checkpoint_every=2"]
    with pytest.raises(DualatError, match="stage 2 diverged at iteration 4 .*parameters=nan.*--resume") as err:
        train("digits", args, out=out, show_progress=False)
    assert "\n" not in str(err.value)
    last = safe_load(out / "last.pt")
    assert (last["stage"], last["iteration"]) == (2, 2)
    for name in ("last.pt", "best_fid.pt", "best_robust.pt"):
        state = safe_load(out / name)
        assert state["iteration"] <= 3
        model = state["model"]
        assert all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point()), name
    assert json.loads((out / "diverged.json").read_text())["iteration"] == 4
