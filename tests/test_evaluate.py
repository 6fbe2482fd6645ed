"""Evaluation families on a tiny plain (non-robust) digits classifier trained inside the module."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dualat.checkpoint import atomic_save
from dualat.cli import main
from dualat.config import load_config, save_config
from dualat.data import load_dataset
from dualat.errors import DualatError
from dualat.evaluate import (autoattack_accuracy, calibration, clean_accuracy, default_eps, ood_auroc, ood_scores,
                             ood_sets, parse_eps, pgd_accuracy, push_to_distribution, reliability_diagram)
from dualat.evaluate.run import evaluate
from dualat.loading import load_model
from dualat.metrics import expected_calibration_error, save_stats
from dualat.models import create_model


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """A run directory holding a plain classifier: ~95% clean accuracy, no robustness at all."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is faster than two fighting for cores
    cfg = load_config("digits", ["eval.evalnet_iterations=60"])
    train = load_dataset("digits", "train")
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1, 8, mean=cfg.data.mean, std=cfg.data.std)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        x, y = train.batch(torch.randint(0, len(train), (64,), generator=g))
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    run = tmp_path_factory.mktemp("plain_run")
    save_config(cfg, run / "config.yaml")
    atomic_save(model.state_dict(), run / "model_ema.safetensors")
    yield run, model.eval(), load_dataset("digits", "test")
    torch.set_num_threads(threads)


def test_eps_parsing_and_defaults():
    assert parse_eps("8/255") == 8 / 255 and parse_eps(0.5) == 0.5 and parse_eps("1") == 1.0
    for bad in ("abc", "1/0", "-1", 0):
        with pytest.raises(DualatError):
            parse_eps(bad)
    assert default_eps(load_config("digits", [])) == {"L2": 0.5, "Linf": 0.1}
    cifar = load_config("cifar10_wrn34", [])
    assert default_eps(cifar) == {"L2": 0.5, "Linf": 8 / 255}


def test_plain_model_has_no_robustness(plain_run):
    run, _, test = plain_run
    model, _, info = load_model(run)                       # the checkpoint, as `dualat eval` opens it
    assert info["checkpoint"] == "ema" and not model.training
    assert clean_accuracy(model, test) > 0.9
    assert pgd_accuracy(model, test, 60, "L2", 2.0, steps=10) < 0.05
    assert pgd_accuracy(model, test, 60, "Linf", 0.3, steps=10) < 0.05
    for norm, eps in (("L2", 2.0), ("Linf", 0.3)):
        aa = autoattack_accuracy(model, test, 30, norm, eps, version="custom", attacks=["apgd-ce"], n_iter=10,
                                 show_progress=False)
        assert aa["clean_acc"] > 0.85 and aa["robust_acc"] < 0.05, aa
        assert aa["max_perturbation"] <= eps * (1 + 1e-4)          # AutoAttack stays inside the ball
        assert "NON-standard" in aa["protocol"] and norm in aa["protocol"]
    # the standard version: APGD-CE already breaks every image, so the later attacks have nothing left
    std = autoattack_accuracy(model, test, 8, "L2", 3.0, show_progress=False)
    assert std["robust_acc"] == 0.0 and std["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert "standard" in std["protocol"] and "NON-standard" not in std["protocol"]
    # at a tiny budget the same attack barely changes anything
    small = autoattack_accuracy(model, test, 30, "L2", 1e-3, version="custom", n_iter=5, show_progress=False)
    assert small["robust_acc"] >= small["clean_acc"] - 0.04


def test_autoattack_argument_mistakes(plain_run):
    _, model, test = plain_run
    with pytest.raises(DualatError, match="unknown AutoAttack attack"):
        autoattack_accuracy(model, test, 4, version="custom", attacks=["pgd"], show_progress=False)
    with pytest.raises(DualatError, match="version custom"):
        autoattack_accuracy(model, test, 4, version="standard", attacks=["apgd-ce"], show_progress=False)


def test_ood_scores_sets_and_adversarial_push(plain_run):
    run, model, test = plain_run
    cfg = load_config(run / "config.yaml", [])
    sets, skipped = ood_sets(cfg, (1, 8, 8), 40, seed=0)
    assert set(sets) == {"uniform_noise", "patches"} and "other_dataset" in skipped
    assert all(x.shape == (40, 1, 8, 8) and 0 <= x.min() and x.max() <= 1 for x in sets.values())
    pushed = push_to_distribution(model, sets["uniform_noise"], eps=1.0, steps=10)
    assert (pushed - sets["uniform_noise"]).flatten(1).norm(dim=1).max() <= 1.0 + 1e-4
    before, after = ood_scores(model, sets["uniform_noise"]), ood_scores(model, pushed)
    assert after["logsumexp"].mean() > before["logsumexp"].mean()   # pushed toward "in-distribution"
    in_x = test.batch(torch.arange(80))[0]
    table = ood_auroc(model, in_x, sets, adv_eps=1.0, adv_steps=10)
    for row in table.values():
        assert set(row) == {"logsumexp", "max_softmax", "adv_logsumexp", "adv_max_softmax"}
        assert all(0.0 <= v <= 1.0 for v in row.values())
        assert row["adv_logsumexp"] <= row["logsumexp"] + 0.02


def test_calibration_and_reliability_png(plain_run, tmp_path):
    _, model, test = plain_run
    c = calibration(model, test, n=120, n_bins=15)
    with torch.no_grad():
        p = torch.softmax(model(test.batch(torch.arange(120))[0]).double(), 1)
    ece, _ = expected_calibration_error(p.amax(1).numpy(), (p.argmax(1) == test.y[:120]).numpy(), 15)
    assert abs(c["ece"] - ece) < 1e-9 and c["n"] == 120 and len(c["bins"]) == 15
    from PIL import Image
    path = reliability_diagram(c["bins"], tmp_path / "rel.png", "title")
    with Image.open(path) as im:
        assert im.size[0] > 100 and im.format == "PNG"


def test_eval_verb_writes_everything(plain_run, tmp_path, capsys):
    run, _, _ = plain_run
    out = tmp_path / "ev"
    assert main(["eval", str(run), "--n", "60", "--n-samples", "100", "--steps", "3", "--n-ood", "40",
                 "--eps-linf", "8/255", "--autoattack", "--aa-version", "custom", "--aa-iters", "5",
                 "--out", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    for protocol in ("clean_protocol", "robust_protocol", "autoattack_protocol", "generative_protocol",
                     "ood_protocol", "calibration_protocol"):
        assert f"{protocol}:" in table, protocol
    for key in ("robust_acc", "fd_floor_train_vs_test", "precision", "coverage", "inception_score", "ece",
                "uniform_noise", "adv_logsumexp"):
        assert key in table, key
    m = json.loads((out / "metrics.json").read_text())
    assert m["eps_Linf"] == 8 / 255 and m["eps_L2"] == 0.5 and m["robust_acc"] == m["pgd_L2_acc"]
    assert 0 <= m["autoattack_L2_acc"] <= m["autoattack_clean_acc"] <= 1
    assert 1.0 <= m["inception_score"] <= 10.0 and m["extractor"] == "evalnet" and m["n_samples"] == 100
    assert all(0 <= m[k] <= 1 for k in ("precision", "recall", "coverage", "class_agreement"))
    assert m["fd_floor_train_vs_test"] < m["fd_seeds"]
    assert m["checkpoint"]["sha256"] in m["generative_protocol"]
    for name in ("reliability.png", "samples.png", "samples.npz", "ref_stats_evalnet_train.npz"):
        assert (out / name).is_file(), name
    # the saved reference statistics can be given back, and must match the extractor's dimension
    again = evaluate(run, robust=False, ood=False, calibrate=False, n_samples=50, steps=2, show_progress=False,
                     ref_stats=out / "ref_stats_evalnet_train.npz")
    assert again["ref"].startswith("loaded from") and np.isfinite(again["fd"])
    save_stats(tmp_path / "wrong.npz", np.zeros(3), np.eye(3))
    with pytest.raises(DualatError, match="dimension"):
        evaluate(run, robust=False, ood=False, calibrate=False, n_samples=50, steps=2, show_progress=False,
                 ref_stats=tmp_path / "wrong.npz")


def test_inception_without_weights_is_one_clear_line(plain_run, capsys):
    run, _, _ = plain_run
    assert main(["eval", str(run), "--generative", "--extractor", "inception", "--n-samples", "20", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("dualat: error:") == 1 and "--inception-weights" in err and "never downloads" in err


def test_fid_inception_architecture_loads_a_weights_file(tmp_path):
    from dualat.evaluate.extractors import InceptionExtractor
    from dualat.evaluate.inception import FIDInceptionV3, load_fid_inception
    torch.manual_seed(0)
    state = {k: v for k, v in FIDInceptionV3().state_dict().items() if "num_batches_tracked" not in k}
    torch.save(state, tmp_path / "pt_inception.pth")
    ext = InceptionExtractor(tmp_path / "pt_inception.pth")
    feats, probs = ext(torch.rand(1, 1, 8, 8))
    assert feats.shape == (1, 2048) and probs.shape == (1, 1008) and abs(probs.sum() - 1) < 1e-9
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(DualatError, match="not the pytorch-fid Inception"):
        load_fid_inception(tmp_path / "other.pth")


def test_eval_of_a_checkpoint_file_writes_beside_it(plain_run, capsys):
    run, _, _ = plain_run
    assert main(["eval", str(run / "model_ema.safetensors"), "--calibration", "--n", "50", "--quiet"]) == 0
    assert "calibration_protocol:" in capsys.readouterr().out
    m = json.loads((run / "eval-model_ema" / "metrics.json").read_text())
    assert set(m) >= {"ece", "calibration_bins", "reliability_diagram"} and "clean_acc" not in m
    assert (run / "eval-model_ema" / "reliability.png").is_file()


def test_sweep_steps_gives_one_point_per_step_count(plain_run, tmp_path, capsys):
    run, _, _ = plain_run
    kw = dict(robust=False, ood=False, calibrate=False, n_samples=40, k=3, is_splits=2, show_progress=False)
    res = evaluate(run, steps=2, sweep_steps="1,2,5", out=tmp_path / "e", **kw)
    sweep = res["generative_sweep"]
    assert sweep["sampler"] == "pgd" and sweep["steps"] == [1, 2, 5] and sweep["extractor"] == "evalnet"
    assert [p["steps"] for p in sweep["points"]] == [1, 2, 5]
    for p in sweep["points"]:
        assert np.isfinite(p["fd"]) and 0 <= p["precision"] <= 1 and 0 <= p["recall"] <= 1 and p["n"] == 40
        assert p["passes_per_image"] == p["steps"] and p["forward_only_per_image"] == 0  # counted, one per step
    # the point at the main step count is the main measurement: same seeds, same reference
    assert sweep["points"][1]["fd"] == pytest.approx(res["fd"], rel=1e-9)
    assert len({p["fd"] for p in sweep["points"]}) == 3
    saved = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert saved["generative_sweep"]["points"][2]["steps"] == 5
    assert main(["eval", str(run), "--generative", "--n-samples", "40", "--n-ref", "40", "--sweep-steps", "1,3",
                 "--out", str(tmp_path / "c"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "generative sweep (pgd" in out and "passes/img" in out
    assert [p["steps"] for p in json.loads((tmp_path / "c" / "metrics.json").read_text())
            ["generative_sweep"]["points"]] == [1, 3]


@pytest.mark.parametrize("bad", ["0,x", "10,,20", "-5", "3,3", ""])
def test_bad_sweep_steps_are_one_error_line(plain_run, capsys, bad):
    run, _, _ = plain_run
    assert main(["eval", str(run), "--generative", "--sweep-steps", bad, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sweep-steps" in err[0] and "10,20,40,80" in err[0]
    assert main(["eval", str(run), "--robust", "--sweep-steps", "10", "--quiet"]) == 2
    assert "add --generative" in capsys.readouterr().err


def test_eval_seeds_option_picks_another_held_out_source(plain_run, capsys):
    run, _, _ = plain_run
    kw = dict(robust=False, ood=False, calibrate=False, n_samples=30, k=3, is_splits=2, steps=2, show_progress=False)
    base = evaluate(run, **kw)
    mixed = evaluate(run, seeds="mix:0.5", **kw)
    assert base["sample_seeds"] == "patches" and mixed["sample_seeds"] == "mix:0.5"
    assert "from held-out mix:0.5 seeds" in mixed["generative_protocol"] and mixed["fd_seeds"] != base["fd_seeds"]
    assert main(["eval", str(run), "--generative", "--seeds", "pathces", "--quiet"]) == 2
    assert "unknown seed source 'pathces'" in capsys.readouterr().err


def test_evalnet_cache_keeps_one_network_per_training_length(tmp_path, monkeypatch):
    """A network cached for one eval.evalnet_iterations is never used for another (it silently
    changed every FD before); a cache named before the length was in the name is used when its card
    says the same length."""
    from dualat.evaluate.evalnet import default_evalnet_path, load_evalnet
    monkeypatch.setenv("DUALAT_CACHE", str(tmp_path))
    data = load_config("digits").data
    short, longer = default_evalnet_path(data, 2), default_evalnet_path(data, 3)
    assert short != longer and short.name == "digits-1x8x8-k10-it2.safetensors"
    w2 = load_evalnet(data, iterations=2, show_progress=False).state_dict()
    w3 = load_evalnet(data, iterations=3, show_progress=False).state_dict()
    assert short.exists() and longer.exists()
    assert json.loads(short.with_suffix(".json").read_text())["iterations"] == 2
    assert any(not torch.equal(w2[k], w3[k]) for k in w2)
    legacy = short.with_name("digits-1x8x8-k10.safetensors")
    short.rename(legacy)
    short.with_suffix(".json").rename(legacy.with_suffix(".json"))
    assert default_evalnet_path(data, 2) == legacy  # same length on its card: still used
    assert default_evalnet_path(data, 4).name.endswith("-it4.safetensors")  # another length: not
