"""Foreign checkpoints: the DAT authors' files, JEM, RobustBench and MadryLab layouts load into our
models with a report of missing and unexpected tensors; pickled objects are refused."""
import json
import os
import pickle

import pytest
import torch

from dualat.checkpoint import extract_state_dict, load_weights, safe_load
from dualat.cli import main
from dualat.errors import DualatError
from dualat.models import create_model


def _backbone(model) -> dict:
    """Our Classifier's weights without its `net.` wrapper and input normalisation: what a
    foreign backbone checkpoint of the same architecture holds."""
    return {k[len("net."):]: v.clone() for k, v in model.state_dict().items() if k.startswith("net.")}


def _head(model) -> str:
    return [k for k, v in _backbone(model).items() if v.dim() == 2][-1][: -len(".weight")]


def _foreign(layout: str, src) -> dict:
    """A checkpoint dict laid out as `layout` saves it, holding the weights of `src`."""
    bb = _backbone(src)
    if layout == "dat_bestfid":            # rebm save_model of an nn.DataParallel model
        return {"module." + k: v for k, v in bb.items()}
    if layout == "dat_ema":                # rebm AveragedModel around the DataParallel model
        return {"module.n_averaged": torch.tensor(17), **{"module.module." + k: v for k, v in bb.items()}}
    if layout == "dat_training_state":     # rebm training_state_latest.pth
        return {"model_state_dict": {"module." + k: v * 0 for k, v in bb.items()},
                "ema_state_dict": {"n_averaged": torch.tensor(5), **{"module.module." + k: v for k, v in bb.items()}},
                "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
                "training_state": {"global_step": 1000, "cur_outdist_steps": 12},
                "config": {"lr": 0.1, "model_type": "WideResNet"}, "wandb_run_id": None}
    if layout == "jem":                    # JEM: backbone f, class_output head, energy head, replay buffer
        head = _head(src)
        sd = {"f." + k: v for k, v in bb.items() if not k.startswith(head + ".")}
        sd.update({"class_output.weight": bb[head + ".weight"], "class_output.bias": bb[head + ".bias"],
                   "energy_output.weight": torch.zeros(1, bb[head + ".weight"].shape[1]),
                   "energy_output.bias": torch.zeros(1)})
        return {"model_state_dict": sd, "replay_buffer": torch.rand(40, *src.mean.shape[1:2], 8, 8)}
    if layout == "robustbench":            # {'state_dict': ...} with DataParallel names, plus stray extras
        return {"state_dict": {**{"module." + k: v for k, v in bb.items()},
                               "module.extra_buffer": torch.zeros(3)}}
    if layout == "robustbench_raw":
        return dict(bb)
    if layout == "madry":                  # MadryLab robustness: model + attacker copy + normaliser
        sd = {"module.model." + k: v for k, v in bb.items()}
        sd.update({"module.attacker.model." + k: v for k, v in bb.items()})
        sd.update({"module.normalizer.new_mean": torch.zeros(3, 1, 1),
                   "module.normalizer.new_std": torch.ones(3, 1, 1)})
        return {"model": sd, "optimizer": {"state": {}, "param_groups": []}, "schedule": None, "epoch": 90}
    raise KeyError(layout)


LAYOUTS = ["dat_bestfid", "dat_ema", "dat_training_state", "jem", "robustbench", "robustbench_raw", "madry"]


# every layout on WRN-16-4 (head `fc`); two on PreAct ResNet-18 (head `linear`, 11M weights: slower)
CASES = [(layout, "wrn16_4") for layout in LAYOUTS] + [("dat_ema", "preact_resnet18"), ("jem", "preact_resnet18")]


@pytest.mark.parametrize("layout, arch", CASES)
def test_foreign_layouts_load_with_a_report(layout, arch, tmp_path):
    src = create_model(arch, num_classes=10, in_channels=3, image_size=32)
    path = tmp_path / "model_bestfid.pth"
    torch.save(_foreign(layout, src), path)          # plain torch.save, as the other code bases do
    dst = create_model(arch, num_classes=10, in_channels=3, image_size=32)
    report = load_weights(dst, extract_state_dict(safe_load(path)))
    n_backbone = len(_backbone(src))
    assert report["loaded"] == n_backbone
    assert report["missing"] == ["mean", "std"]      # the input normalisation stays as configured
    for k, v in _backbone(src).items():
        assert torch.equal(dst.state_dict()["net." + k], v), k
    expected_extra = {"dat_bestfid": [], "dat_ema": [], "dat_training_state": [], "robustbench_raw": [],
                      "jem": ["energy_output.bias", "energy_output.weight"], "robustbench": ["extra_buffer"]}
    if layout == "madry":
        assert len(report["unexpected"]) == n_backbone + 2
        assert all(k.startswith(("attacker.model.", "normalizer.")) for k in report["unexpected"])
    else:
        assert report["unexpected"] == expected_extra[layout]


def test_wrong_architecture_is_one_clear_line(tmp_path):
    src = create_model("preact_resnet18", num_classes=10, in_channels=3, image_size=32)
    dst = create_model("wrn16_4", num_classes=10, in_channels=3, image_size=32)
    with pytest.raises(DualatError, match="model.name") as err:
        load_weights(dst, _foreign("dat_bestfid", src) | {"module.conv1.weight": torch.zeros(1)})
    assert "\n" not in str(err.value)
    with pytest.raises(DualatError, match="missing"):
        load_weights(create_model("preact_resnet18", 10, 3, 32), {"net.conv1.weight": _backbone(src)["conv1.weight"]},
                     strict=True)


def test_stage1_init_from_an_authors_checkpoint(tmp_path, capsys):
    """`stage1.init=PATH` with an authors-style file (DataParallel names, an EMA counter and a
    replay buffer beside the weights): the weights arrive and the count is printed and logged."""
    src = create_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    for p in src.parameters():
        torch.nn.init.normal_(p)
    path = tmp_path / "model_bestfid.pth"
    sd = _foreign("dat_ema", src)
    torch.save({"model_state_dict": sd, "replay_buffer": torch.rand(10, 1, 8, 8)}, path)
    out = tmp_path / "run"
    assert main(["train", "digits", f"stage1.init={path}", "stage1.iterations=0", "stage2.iterations=0",
                 "eval.n_test=20", "eval.evalnet_iterations=60", "--out", str(out)]) == 0
    n = len(_backbone(src))
    assert f"stage 1: loaded {n} tensors from {path} (2 missing, 0 unexpected)" in capsys.readouterr().out
    record = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()
              if '"stage1_init"' in l][0]
    assert record["loaded"] == n and record["missing"] == ["mean", "std"] and record["unexpected"] == []
    trained = safe_load(out / "stage1.pt")["model"]
    for k, v in _backbone(src).items():
        assert torch.equal(trained["net." + k], v), k


def test_pickled_objects_are_refused_with_the_fix(tmp_path, capsys):
    """A whole pickled nn.Module (or any object) is never unpickled; the one error line says how to
    turn it into a state dict. Through the CLI: exit 2, no traceback."""
    whole = tmp_path / "whole.pth"
    torch.save(create_model("small_cnn", 10, 1, 8), whole)
    with pytest.raises(DualatError) as err:
        safe_load(whole)
    msg = str(err.value)
    assert "\n" not in msg and "dualat.models" in msg and "state_dict()" in msg
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"model_state_dict": Evil()}))
    for path in (whole, evil):
        assert main(["train", "digits", f"stage1.init={path}", "--out", str(tmp_path / path.stem), "--quiet"]) == 2
        err_lines = capsys.readouterr().err.strip().splitlines()
        assert len(err_lines) == 1 and err_lines[0].startswith("dualat: error: config key stage1.init: checkpoint")
        assert "refused" in err_lines[0] and not (tmp_path / path.stem).exists()
    assert not marker.exists()


@pytest.mark.parametrize("layout, renamed", [("robustbench", {"module.": "net."}), ("madry", {"module.model.": "net."}),
                                             ("robustbench_raw", {"": "net."}), ("dat_ema", {"module.module.": "net."})])
def test_the_report_names_the_prefix_it_stripped(layout, renamed):
    src = create_model("wrn16_4", num_classes=10, in_channels=3, image_size=32)
    report = load_weights(create_model("wrn16_4", num_classes=10, in_channels=3, image_size=32),
                          extract_state_dict(_foreign(layout, src)))
    assert {k: v for k, v in report["renamed"].items() if not k.startswith("module.normalizer")} == renamed


def test_a_text_file_named_last_pt_is_named_not_a_pytorch_file(tmp_path):
    """A text file is no checkpoint at all: one line saying so, not the unpickling refusal."""
    from dualat.checkpoint import safe_load
    from dualat.errors import DualatError
    for text in ("config: 1\n", "hello\n", ""):
        (tmp_path / "last.pt").write_text(text)
        with pytest.raises(DualatError, match=r"is not a PyTorch file \((it starts with the text|it is empty)") as err:
            safe_load(tmp_path / "last.pt")
        assert "\n" not in str(err.value) and "run code" not in str(err.value)
