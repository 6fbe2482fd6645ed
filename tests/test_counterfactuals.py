"""Counterfactuals measured (issue 28): counterfactuals.npz from `dualat explain`, the family
`dualat eval --counterfactuals` on a tiny digits run, its realism numbers, the cached
autoencoders, and one-line errors for bad arguments."""
import json

import numpy as np
import pytest
import torch

import dualat
from dualat.evaluate.run import evaluate
from dualat.cli import main
from dualat.data import load_dataset
from dualat.evaluate import autoencoders
from dualat.evaluate.cfmetrics import class_stats, pooled_fd
from dualat.evaluate.extractors import make_extractor
from dualat.loading import load_model
from test_sample import one_thread, tiny_digits_run  # noqa: F401  (the shared run; one OpenMP thread)

FAST = dict(cf_n=20, radii=[0.2, 0.6], cf_steps=5, ae_iterations=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):  # noqa: F811
    return tiny_digits_run(tmp_path_factory)


@pytest.fixture(scope="module")
def self_judged(run, tmp_path_factory):
    """The family with the explained model as its own judge."""
    out = tmp_path_factory.mktemp("cf-eval")
    r = evaluate(run, robust=False, generative=False, ood=False, calibrate=False, counterfactuals=True,
                        judge=str(run), out=out, show_progress=False, device="cpu", **FAST)
    return r, out


def test_explain_writes_counterfactuals_npz(run, tmp_path):
    assert main(["explain", str(run), "--images", "0,1,2", "--target", "true,3", "--radii", "0.1", "0.3",
                 "--steps", "3", "--out", str(tmp_path), "--quiet"]) == 0
    record = json.loads((tmp_path / "explain.json").read_text())
    pairs = sum(len(e["targets"]) for e in record["inputs"])   # 'true' and 3, one fewer where the label is 3
    with np.load(tmp_path / "counterfactuals.npz") as f:
        assert f["inputs"].shape == (3, 1, 8, 8) and f["labels"].shape == (3,) and f["input_probs"].shape == (3, 10)
        assert f["counterfactuals"].shape == (2, pairs, 1, 8, 8)
        assert f["confidences"].shape == f["predictions"].shape == f["distances"].shape == (2, pairs)
        assert f["targets"].shape == f["input_index"].shape == (pairs,)
        assert list(f["radii"]) == pytest.approx([0.1, 0.3])
        assert (f["distances"] <= f["radii"][:, None] + 1e-4).all()
        first = record["inputs"][0]["targets"][0]
        assert f["targets"][0] == first["target"]
        assert f["confidences"][1, 0] == pytest.approx(first["radii"][1]["confidence"])


def test_self_judged_validity_equals_model_validity(self_judged):
    r, out = self_judged
    c = r["counterfactuals"]
    assert [row["radius"] for row in c["rows"]] == [0.0, 0.2, 0.6] and c["n_images"] == 20 and c["n_pairs"] == 20
    for row in c["rows"]:
        assert row["judge_flip_rate"] == row["flip_rate"]
        assert row["judge_target_prob"] == pytest.approx(row["target_prob"], abs=1e-6)
        assert row["l2"] <= row["radius"] + 1e-4
    # a bigger ball moves the inputs further and makes the target likelier to the model
    assert c["rows"][2]["l2"] > c["rows"][1]["l2"] > 0 and c["rows"][2]["target_prob"] > c["rows"][0]["target_prob"]
    written = json.loads((out / "metrics.json").read_text())
    assert "counterfactuals_protocol" in written and written["counterfactuals"]["radii"] == [0.2, 0.6]
    with np.load(out / "counterfactuals.npz") as f:
        assert f["counterfactuals"].shape == (2, 20, 1, 8, 8)
        labels = f["labels"]
    assert np.bincount(labels, minlength=10).tolist() == [2] * 10     # class-balanced


def test_realism_fd_of_real_images_against_themselves_is_zero(run):
    _, cfg, _ = load_model(run)
    ext = make_extractor("evalnet", cfg.data, cfg.eval.evalnet, cfg.eval.evalnet_iterations, show_progress=False)
    test = load_dataset("digits", "test")
    feats, classes = ext(test.batch(torch.arange(len(test)))[0])[0], test.y.numpy()
    ref = class_stats(feats, classes)
    assert pooled_fd(feats, classes, ref) == pytest.approx(0.0, abs=1e-6)
    noise = ext(torch.rand(len(test), 1, 8, 8))[0]
    assert pooled_fd(noise, classes, ref) > 0.01


def test_autoencoders_are_cached_and_reused(run, tmp_path, monkeypatch):
    monkeypatch.setenv("DUALAT_CACHE", str(tmp_path))
    _, cfg, _ = load_model(run)
    aes, path = autoencoders.load_autoencoders(cfg.data, iterations=2, show_progress=False)
    assert sorted(aes) == sorted([f"class{c}" for c in range(10)] + ["all"]) and path.is_file()
    assert path.parent.parent == tmp_path and json.loads(path.with_suffix(".json").read_text())["iterations"] == 2
    stamp = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached autoencoders were trained again")

    monkeypatch.setattr(autoencoders, "train_autoencoders", no_training)
    again, _ = autoencoders.load_autoencoders(cfg.data, iterations=2, show_progress=False)
    assert path.stat().st_mtime_ns == stamp
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(aes["class3"](x), again["class3"](x))


@pytest.fixture(scope="module")
def five_class_run(tmp_path_factory, one_thread):  # noqa: F811
    out = tmp_path_factory.mktemp("five") / "run"
    dualat.train("digits", ["method=plain", "data.name=fake", "data.num_classes=5", "data.image_size=8",
                            "data.channels=1", "stage1.iterations=2", "eval.every=100", "log.every=1",
                            "log.checkpoint_every=100"], out=out, show_progress=False)
    return out


@pytest.mark.parametrize("args, needle", [
    (["--cf-target", "12"], "not a class index: this model has 10 classes"),
    (["--cf-target", "banana"], "--cf-target takes wrong"),
    (["--radii", "0"], "--radii must be positive"),
    (["--radii", "0.5", "-1"], "--radii must be positive"),
    (["--judge", "FIVE"], "has 5 classes, the explained model 10"),
    (["NOFAMILY", "--robust"], "add --counterfactuals"),
])
def test_bad_arguments_get_one_error_line(run, five_class_run, tmp_path, capsys, args, needle):
    args = [str(five_class_run) if a == "FIVE" else a for a in args]
    family = [] if "NOFAMILY" in args else ["--counterfactuals"]
    rc = main(["eval", str(run), "--cf-n", "10", "--cf-steps", "2", "--radii", "0.2", "--out", str(tmp_path),
               "--quiet"] + family + [a for a in args if a != "NOFAMILY"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("dualat: error:") and needle in err[0], err


def test_comparison_table_has_a_row_per_model_and_radius(self_judged):
    from dualat.evaluate.cftable import comparison_markdown
    c = self_judged[0]["counterfactuals"]
    lines = comparison_markdown({"a": [c], "b": [c, c]}).splitlines()
    assert len(lines) == 2 + 2 * 3 and lines[2].startswith("| a | inputs |") and lines[-1].startswith("| b | 0.6 |")
    assert "±" in lines[-1] and "±" not in lines[2]


def test_study_evaluation_is_cached_in_the_run(run, self_judged, tmp_path):
    """`dualat study --counterfactuals`'s piece of work on one model: wrong-judge targets, cached."""
    import shutil

    from dualat.study_runs import evaluate_counterfactuals
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    r = evaluate_counterfactuals(copy, "ema", {"cf_radii": [0.3]}, show_progress=False)
    c = r["counterfactuals"]
    assert c["target"] == "wrong-judge" and [row["radius"] for row in c["rows"]] == [0.0, 0.3]
    written = copy / "eval-study-ema-counterfactuals" / "metrics.json"
    stamp = written.stat().st_mtime_ns
    assert evaluate_counterfactuals(copy, "ema", {"cf_radii": [0.3]}, False)["counterfactuals"] == c
    assert written.stat().st_mtime_ns == stamp


def test_cf_compare_script_table_and_figure(run, self_judged, tmp_path, capsys):
    import sys
    from pathlib import Path

    from PIL import Image
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import cf_compare
    out = tmp_path / "cmp"
    assert cf_compare.main(["--model", f"dat={run}", "--model", f"stage1={run}@stage1", "--radii", "0.2", "0.5",
                            "--n", "20", "--steps", "3", "--out", str(out), "--quiet"]) == 0
    md = (out / "cf_compare.md").read_text()
    assert "| dat | 0.5 |" in md and "| stage1 | inputs |" in md and "wrong class" in md
    saved = json.loads((out / "cf_compare.json").read_text())
    assert saved["radii"] == [0.2, 0.5] and saved["models"]["stage1"]["checkpoint"] == "stage1"
    with Image.open(out / "cf_compare.png") as im:       # 8 rows of 72-px cells, 3 columns
        assert im.size[0] >= 3 * 72 and im.size[1] >= 8 * 72
    capsys.readouterr()
    args = ["--model", f"dat={run}", "--model", f"stage1={run}@stage1", "--radii", "0.2", "0.5", "--n", "20",
            "--out", str(out), "--quiet", "--reuse"]
    assert cf_compare.main(args + ["--steps", "3"]) == 0       # same weights and settings: nothing measured again
    printed = capsys.readouterr().out
    assert "dat: reused" in printed and "stage1: reused" in printed
    assert (out / "cf_compare.md").read_text().split("\n\n", 2)[2] == md.split("\n\n", 2)[2]
    assert cf_compare.main(args + ["--steps", "4"]) == 0       # another setting: measured again
    assert "reused" not in capsys.readouterr().out
    assert json.loads((out / "dat" / "metrics.json").read_text())["counterfactuals"]["steps"] == 4
    assert cf_compare.main(["--model", f"{run}", "--out", str(out)]) == 2
    assert "LABEL=SOURCE" in capsys.readouterr().err
