"""Config loading, overrides and validation; every preset validates."""
import dataclasses
from pathlib import Path

import pytest

from dualat.config import PRESET_DIR, load_config, parse_override
from dualat.errors import DualatError

PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def test_presets_present():
    assert {"fashion_mnist", "digits", "cifar10_wrn34", "cifar100_wrn34", "imagenet256_resnet50"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_validates(name):
    cfg = load_config(name)
    assert cfg.name == name
    assert cfg.stage2.t_max >= cfg.stage2.t_init


def test_overrides_are_typed_and_nested():
    cfg = load_config("fashion_mnist", ["stage2.optim.lr=0.01", "method=dat", "stage1.attack.norm=Linf",
                                        "stage1.attack.eps=8/255", "stage2.auc_window=5"])
    assert cfg.stage2.optim.lr == 0.01
    assert cfg.stage1.attack.eps == pytest.approx(8 / 255)
    assert cfg.stage2.auc_window == 5
    # a partial section keeps that stage's own defaults
    assert cfg.stage2.optim.schedule == "constant"
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


@pytest.mark.parametrize("override, needle", [
    ("stage2.optim.lrr=0.1", "did you mean stage2.optim.lr"),
    ("stage1.attack.eps=-1", "stage1.attack.eps"),
    ("stage2.auc_threshold=1.5", "stage2.auc_threshold"),
    ("stage1.attack.step_size=0", "stage1.attack.step_size"),
    ("stage2.batch_size=abc", "stage2.batch_size must be an integer"),
    ("stage2.freeze_bn=maybe", "true or false"),
    ("data.name=fashoin_mnist", "did you mean fashion_mnist"),
    ("model.name=wrn34", "model.name"),
    ("method=sgld", "method"),
    ("stage2=3", "mapping"),
    ("nokey", "key=value"),
])
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(DualatError) as err:
        load_config("digits", [override])
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(DualatError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage1: [unclosed")
    with pytest.raises(DualatError, match="not valid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(DualatError, match="mapping"):
        load_config(lst)


def test_old_configs_map_onto_the_threat_section(tmp_path):
    """Configs written before `threat` had a home (stage2.attack, log.progress; configs saved in
    run directories, and the bundled model's until 2026-12-02) keep loading, onto the new keys."""
    import yaml
    from dualat.config import from_dict, to_dict
    old = yaml.safe_load((Path(__file__).parent / "data" / "old_run_config.yaml").read_text())
    assert "attack" in old["stage2"] and "threat" not in old       # the old bundled model's snapshot
    cfg = from_dict(old)
    assert (cfg.threat.norm, cfg.threat.eps, cfg.threat.steps) == (old["stage2"]["attack"]["norm"],
                                                                   old["stage2"]["attack"]["eps"],
                                                                   old["stage2"]["attack"]["steps"])
    assert cfg.stage1.loss_bound == old["stage2"]["loss_bound"]    # stage 1 used stage 2's bound then
    assert "progress" not in to_dict(cfg)["log"] and "attack" not in to_dict(cfg)["stage2"]
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({**old, "stage2": {**old["stage2"], "loss_bound": 77.0,
                                                      "attack": {"norm": "Linf", "eps": "8/255"}}}))
    cfg = load_config(path, ["threat.steps=7"])
    assert (cfg.threat.norm, cfg.threat.eps, cfg.threat.steps, cfg.stage1.loss_bound) == ("Linf", 8 / 255, 7, 77.0)
    # an old-style override on a new preset is read as threat.*, the bound as the old code used it
    cfg = load_config("digits", ["stage2.attack.eps=0.25", "stage2.loss_bound=9"])
    assert cfg.threat.eps == 0.25 and cfg.threat.step_size == 0.25 and cfg.stage1.loss_bound == 9
    assert load_config("digits", ["stage2.loss_bound=9"]).stage1.loss_bound == 1e4   # each stage its own
    assert load_config("digits").threat.eps == 0.5
    with pytest.raises(DualatError, match="threat.eps"):
        load_config("digits", ["stage2.attack.eps=-1"])
    with pytest.raises(DualatError, match="stage2.attack"):
        load_config("digits", ["stage2.attack=3"])


def test_fashion_mnist_long_is_the_default_recipe_with_stage_2_three_times_as_long():
    base, long = load_config("fashion_mnist"), load_config("fashion_mnist_long")
    # measured over 3 training seeds (docs/generation.md section 8); nothing else may drift from the default
    assert long.stage2.iterations == 3 * base.stage2.iterations == 2400
    same = dataclasses.replace(long, name=base.name, stage2=dataclasses.replace(long.stage2, iterations=800))
    assert same == base
    assert long.data.seeds == "gaussian" and long.amp == "auto"
    text = (PRESET_DIR / "fashion_mnist_long.yaml").read_text()
    assert "3 training seeds" in text and "not timed from scratch" in text


def test_every_file_in_the_configs_folder_loads():
    folder = Path(__file__).resolve().parent.parent / "configs"  # the repository's symlink to the presets
    files = sorted(folder.glob("*.yaml"))
    assert {f.stem for f in files} == set(PRESETS) and "fashion_mnist_long" in PRESETS
    for f in files:
        assert load_config(str(f)).stage2.t_max >= 1


def test_the_fashion_mnist_preset_trains_and_samples_from_the_fitted_gaussian():
    cfg = load_config("fashion_mnist")   # validates
    assert cfg.data.seeds == "gaussian" and cfg.stage2.auc_threshold == 0.6 and cfg.eval.step_sweep
    paper = load_config("fashion_mnist", ["data.seeds=patches", "stage2.auc_threshold=0.8"])  # the paper's recipe
    assert paper.data.seeds == "patches" and paper.stage2.auc_threshold == 0.8
