"""The bundled Fashion-MNIST model: loads offline, classifies as the README says, samples and explains."""
import re
from pathlib import Path

import pytest

from dualat.data import load_dataset
from dualat.errors import DualatError
from dualat.evaluate import clean_accuracy
from dualat.loading import load_model, pretrained_names
from dualat.sample import sample_to_dir

README = Path(__file__).resolve().parents[1] / "README.md"


def stated_accuracy() -> float:
    m = re.search(r"first 1,000:\s*([0-9.]+)%", README.read_text())
    assert m, "README states the bundled model's accuracy on the first 1,000 test images"
    return float(m.group(1)) / 100


def test_bundled_model_classifies_at_the_stated_accuracy():
    assert "fashion-mnist" in pretrained_names()
    model, cfg, info = load_model("pretrained:fashion-mnist")
    assert info["final_T"] == 14 and cfg.data.seeds == "gaussian" and cfg.eval.evalnet.endswith("evalnet.safetensors")
    acc = clean_accuracy(model, load_dataset("fashion_mnist", "test"), 1000)
    assert abs(acc - stated_accuracy()) <= 0.01


def test_bundled_model_samples_into_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = sample_to_dir("pretrained:fashion-mnist", n=10, steps=3, show_progress=False)
    out = Path(record["out"])
    assert out.parent == Path("pretrained-fashion-mnist")   # never inside the installed package
    assert (tmp_path / out / "grid.png").is_file() and record["steps"] == 3


def test_bundled_model_samples_with_the_steps_its_card_names(tmp_path):
    import json
    from dualat.config import load_config
    from dualat.sampler import default_steps
    from dualat.loading import PRETRAINED_DIR
    card = json.loads((PRETRAINED_DIR / "fashion-mnist" / "card.json").read_text())
    _, cfg, info = load_model("pretrained:fashion-mnist")
    assert info["sample_steps"] == card["sample_steps"] != cfg.stage2.t_max   # the card's, not the config's T_max
    record = sample_to_dir("pretrained:fashion-mnist", n=2, out=tmp_path / "s", show_progress=False)
    assert record["steps"] == card["sample_steps"]
    run = load_config("digits")
    assert default_steps(run) == run.stage2.t_max and default_steps(run, 7) == 7 and default_steps(run, 7, 5) == 5


def test_unknown_bundled_model_is_one_clear_error():
    with pytest.raises(DualatError, match="available: pretrained:fashion-mnist"):
        load_model("pretrained:cifar10")
