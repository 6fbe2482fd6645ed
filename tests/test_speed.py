"""Speed settings: the CPU allocator stops re-faulting large buffers; optional torch.compile."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dualat import speed
from dualat.config import load_config
from dualat.errors import DualatError
from dualat.models import create_model
from dualat.pgd import pgd


_FAULTS = """
import json, resource, torch
from dualat import speed

def faults():  # minor page faults of 4 allocate-fill-free rounds of a 40 MiB buffer, after 2 warm-ups
    def once():
        t = torch.empty(10 << 20)
        t.fill_(1.0)
        del t
    once()
    once()  # the heap may take two rounds to grow to it
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        once()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

default = faults()  # glibc untouched: above 32 MiB it maps, unmaps and faults again
ok = speed.keep_large_buffers()
print(json.dumps({"ok": ok, "setting": speed.allocator_setting(), "default": default, "kept": faults()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_large_buffers_stops_page_faults_on_reuse():
    # a fresh process: the allocator's state depends on everything the process did before
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(speed.__file__).parent.parent),
                                                        os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, env=env, check=True)
    r = json.loads(done.stdout.strip().splitlines()[-1])
    if not r["ok"]:
        pytest.skip("no glibc mallopt here")
    assert r["setting"].startswith("heap")
    assert r["default"] > 0 and r["kept"] < r["default"] / 2


def test_compile_matches_eager_and_stays_off_copies_and_checkpoints():
    torch.manual_seed(0)
    model = create_model("mlp", 3, 2)
    x, y = torch.rand(16, 2), torch.randint(0, 3, (16,))
    eager = pgd(model, x, y, objective="class_logit", steps=2)
    keys = list(model.state_dict())
    try:
        if not speed.compile_model(model):
            pytest.skip("torch.compile unavailable here (the warning path is tested below)")
        assert speed.forward_of(model) is not model
        torch.testing.assert_close(pgd(model, x, y, objective="class_logit", steps=2), eager, rtol=1e-5, atol=1e-6)
        assert list(model.state_dict()) == keys                 # checkpoints unchanged
        twin = copy.deepcopy(model)                              # e.g. the EMA copy
        assert speed.forward_of(twin) is twin
    finally:
        speed.uncompile_model(model)
    assert speed.forward_of(model) is model


def test_compile_without_a_compiler_warns_and_runs_eagerly(monkeypatch):
    monkeypatch.setattr(speed, "_cxx_compiler", lambda: None)
    model = create_model("mlp", 3, 2)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler .* running eagerly"):
        assert speed.compile_model(model, "cpu") is False
    assert speed.forward_of(model) is model


def test_model_compile_is_a_validated_config_key():
    assert load_config("toy2d", ["model.compile=true"]).model.compile is True
    with pytest.raises(DualatError, match="model.compile must be true or false"):
        load_config("toy2d", ["model.compile=fast"])


def test_amp_on_cpu_is_bf16_autocast_where_native_else_ignored(monkeypatch):
    from dualat import precision
    cpu = torch.device("cpu")
    assert precision.precision(False, cpu) == ("float32", None)
    if precision.onednn_bf16():
        with precision.precision(True, cpu)[1]():
            assert torch.nn.Linear(4, 4)(torch.rand(2, 4)).dtype == torch.bfloat16
    monkeypatch.setattr(precision, "onednn_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        assert precision.precision(True, cpu) == ("float32", None)


def test_dat_step_under_cpu_bf16_gives_the_float32_losses_roughly():
    from dualat import precision
    from dualat.optim import make_optimizer
    from dualat.training.steps import StepRig, dat_step
    from dualat.models import freeze_batchnorm
    if not precision.onednn_bf16():
        pytest.skip("no native bf16 on this CPU")
    cfg = load_config("digits")
    s2 = cfg.stage2
    torch.manual_seed(0)
    model = freeze_batchnorm(create_model("small_cnn", 10, 1, 8))
    g = torch.Generator().manual_seed(0)
    x, seeds, y = torch.rand(32, 1, 8, 8, generator=g), torch.rand(32, 1, 8, 8, generator=g), torch.arange(32) % 10
    out = []
    for autocast in (None, precision.autocast_for(precision.BF16, torch.device("cpu"))):
        m = copy.deepcopy(model)
        opt = make_optimizer(m.parameters(), s2.optim)
        out.append(dat_step(m, opt, (x, y), seeds, (x, y), 2, s2, torch.Generator().manual_seed(1),
                            StepRig(autocast), threat=cfg.threat))
    for key in ("bce", "ce", "e_real", "e_contrastive"):
        assert out[1][key] == pytest.approx(out[0][key], rel=0.05, abs=0.02), key
