"""amp: auto resolves by the hardware (monkeypatched here); what must stay float32 under bf16
autocast stays float32. CPU autocast works without native bf16 (only slower), so these run anywhere."""
import importlib
import json

import pytest
import torch

from conftest import TINY_DIGITS
from dualat import precision
from dualat.config import load_config
from dualat.errors import DualatError
from dualat.models import create_model, freeze_batchnorm
from dualat.optim import make_optimizer
from dualat.training import common

CPU = torch.device("cpu")
BF16_CPU = precision.autocast_for(precision.BF16, CPU)


def test_amp_auto_resolves_by_the_hardware(monkeypatch):
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: True)
    assert precision.resolve("auto", CPU) == "bfloat16"
    with precision.precision("auto", CPU)[1]():
        assert torch.nn.Linear(4, 4)(torch.rand(2, 4)).dtype == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: False)
    assert precision.resolve("auto", CPU) == "float32"
    assert precision.precision("auto", CPU) == ("float32", None)
    monkeypatch.setattr(precision, "cuda_bf16", lambda device: True)
    assert precision.resolve("auto", "cuda") == "bfloat16"
    monkeypatch.setattr(precision, "cuda_bf16", lambda device: False)
    assert precision.resolve("auto", "cuda") == "float32"
    for device in (CPU, "cuda"):  # amp=false forces float32 whatever the hardware
        assert precision.resolve(False, device) == "float32"
    assert precision.resolve(True, "cuda") == "bfloat16"  # amp=true keeps its meaning


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert precision.cpu_native_bf16()
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "amx_bf16", "amx_tile"})
    assert precision.cpu_native_bf16()
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f", "avx512bw"})  # AVX512 without BF16
    assert not precision.cpu_native_bf16()
    monkeypatch.undo()
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else None
    if caps is not None:  # this machine: the answer agrees with torch's own probe
        assert precision.cpu_native_bf16() == bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def test_amp_config_accepts_true_false_auto_only():
    assert load_config("digits", ["amp=auto"]).amp == "auto"
    for preset in ("digits", "fashion_mnist", "fashion_mnist_long", "toy2d", "cifar10_wrn34", "imagenet256_resnet50"):
        assert load_config(preset).amp == "auto"  # the default everywhere: bf16 where native, float32 elsewhere
    assert load_config("digits", ["amp=false"]).amp is False
    for bad in ("fast", "1", "bf16"):
        with pytest.raises(DualatError, match="amp must be true, false or auto"):
            load_config("digits", [f"amp={bad}"])


@pytest.mark.parametrize("native", [True, False])
def test_the_log_start_event_and_summary_name_the_precision_used(native, tmp_path, monkeypatch):
    from dualat.report import report
    from dualat.training import train
    from dualat.ui import read_log
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: native)
    args = TINY_DIGITS + ["amp=auto", "device=cpu", "stage1.iterations=2", "stage2.iterations=1", "eval.every=1"]
    run = train("digits", args, out=tmp_path / "r", show_progress=False)
    want = "bfloat16" if native else "float32"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["precision"] == want and summary["amp"] == "auto"
    start = [r for r in read_log(run) if r.get("event") == "start"][0]
    assert start["precision"] == want
    assert f"computed in {want}" in report(run).read_text()
    from dualat.evaluate.run import evaluate, format_table
    from dualat.sample import sample_to_dir
    r = evaluate(run, robust=True, generative=False, ood=False, calibrate=False, n=20, norm="L2", pgd_steps=1,
                 device="cpu", show_progress=False)  # robust accuracy is measured in float32 by default
    assert r["compute_dtype"] == {"clean_acc": "float32", "pgd_L2_acc": "float32", "robust_acc": "float32"}
    r = evaluate(run, robust=True, generative=False, ood=False, calibrate=False, n=20, norm="L2", pgd_steps=1,
                 device="cpu", show_progress=False, amp="auto")  # unless the caller asks for the run's arithmetic
    assert r["compute_dtype"] == {"clean_acc": want, "pgd_L2_acc": want, "robust_acc": want}
    assert f"computed in {want}: clean_acc" in format_table(r)
    r = evaluate(run, robust=True, generative=False, ood=False, calibrate=False, n=20, norm="L2", pgd_steps=1,
                 device="cpu", show_progress=False, amp=False)  # amp=false forces float32
    assert set(r["compute_dtype"].values()) == {"float32"}
    assert sample_to_dir(run, tmp_path / "s", n=4, steps=1, show_progress=False)["compute_dtype"] == want


def _tiny():
    torch.manual_seed(0)
    return freeze_batchnorm(create_model("small_cnn", 10, 1, 8))


def test_pgd_under_autocast_keeps_the_objective_gradient_and_normalisation_float32(monkeypatch):
    pgd_mod = importlib.import_module("dualat.pgd")  # the module (dualat.pgd is also a function)
    model = _tiny().eval()
    seen = {"out": [], "norm": []}
    model.register_forward_hook(lambda m, i, o: seen["out"].append(o.dtype))
    real_norm = pgd_mod._per_sample_norm

    def norm(g):
        out = real_norm(g)
        seen["norm"].append((g.dtype, out.dtype))
        return out
    monkeypatch.setattr(pgd_mod, "_per_sample_norm", norm)
    real_ce = pgd_mod.OBJECTIVES["ce"]
    monkeypatch.setitem(pgd_mod.OBJECTIVES, "ce", lambda logits, y: seen.setdefault("obj", logits.dtype) and
                        real_ce(logits, y))
    x, y = torch.rand(6, 1, 8, 8), torch.arange(6)
    out = pgd_mod.pgd(model, x, y, objective="ce", threat=pgd_mod.L2Ball(1.0), steps=2, step_size=0.5,
                      random_start=torch.Generator().manual_seed(0), autocast=BF16_CPU)
    assert seen["out"] and set(seen["out"]) == {torch.bfloat16}  # the model really ran in bf16
    assert seen["obj"] == torch.float32
    assert seen["norm"] and set(seen["norm"]) == {(torch.float32, torch.float32)}
    assert out.dtype == torch.float32


def test_dat_step_under_autocast_feeds_float32_energies_to_the_bce_and_the_ema_stays_float32(monkeypatch):
    from dualat.training import steps
    cfg = load_config("digits")
    s2 = cfg.stage2
    model = _tiny()
    ema = common.EMA(model, 0.99)
    fed = {}
    real_bce, real_ce = steps.F.binary_cross_entropy_with_logits, steps.F.cross_entropy

    def bce(s, target):
        fed["bce"] = s.dtype
        return real_bce(s, target)

    def ce(logits, y, *a, **k):
        fed.setdefault("ce", logits.dtype)
        return real_ce(logits, y, *a, **k)
    monkeypatch.setattr(steps.F, "binary_cross_entropy_with_logits", bce)
    monkeypatch.setattr(steps.F, "cross_entropy", ce)
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    g = torch.Generator().manual_seed(0)
    x, seeds, y = torch.rand(8, 1, 8, 8, generator=g), torch.rand(8, 1, 8, 8, generator=g), torch.arange(8) % 10
    opt = make_optimizer(model.parameters(), s2.optim)
    m = steps.dat_step(model, opt, (x, y), seeds, (x, y), 2, s2, torch.Generator().manual_seed(1),
                       steps.StepRig(BF16_CPU), threat=cfg.threat)
    assert torch.bfloat16 in seen  # the training forward really ran under bf16 autocast
    assert fed == {"bce": torch.float32, "ce": torch.float32}
    assert all(isinstance(m[k], float) for k in ("bce", "ce", "auc"))
    ema.update(model)
    assert {p.dtype for p in ema.model.parameters()} == {torch.float32}
    assert {p.dtype for p in model.parameters()} == {torch.float32}

