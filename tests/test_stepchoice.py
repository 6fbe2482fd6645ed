"""The sampler's steps chosen at the end of stage 2: sample_steps.json is written, logged, and
is what `dualat sample` / eval take by default; the sweep can be turned off; a broken file is one
clear error."""
import json

import pytest

from conftest import TINY_DIGITS
from dualat.errors import DualatError
from dualat.evaluate.stepchoice import candidates
from dualat.loading import load_model
from dualat.sample import sample_to_dir
from dualat.training import train
from dualat.ui import read_log


def test_candidates_surround_the_final_T():
    assert candidates(7) == [2, 4, 5, 7, 10, 14, 21]
    assert candidates(40) == [10, 20, 30, 40, 60, 80, 120]
    assert candidates(1) == [1, 2, 3] and candidates(0) == [1, 2, 3]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("stepchoice") / "run"
    return train("digits", TINY_DIGITS + ["eval.step_sweep_samples=40"], out=out, show_progress=False)


def test_the_run_records_its_chosen_steps_and_sampling_uses_them(run, tmp_path):
    choice = json.loads((run / "sample_steps.json").read_text())
    summary = json.loads((run / "summary.json").read_text())["stage2"]
    assert choice["sample_steps"] in candidates(summary["T_final"]) == [p["steps"] for p in choice["points"]]
    assert choice["sample_steps"] == min(choice["points"], key=lambda p: p["fd"])["steps"]
    assert summary["sample_steps"] == choice["sample_steps"] and choice["n_samples"] == 40
    assert "never the test split" in choice["protocol"] and 0 < choice["n_ref"] <= 2000
    assert any(r.get("event") == "sample_steps" for r in read_log(run))
    assert load_model(run)[2]["sample_steps"] == choice["sample_steps"]
    # sample takes the recorded choice by default: rewrite it and see the sampler follow
    (run / "sample_steps.json").write_text(json.dumps({**choice, "sample_steps": 3}))
    assert sample_to_dir(run, tmp_path / "s", n=4, show_progress=False)["steps"] == 3
    (run / "sample_steps.json").write_text("{not json")
    with pytest.raises(DualatError, match="sample_steps.json is not readable JSON"):
        load_model(run)
    (run / "sample_steps.json").write_text(json.dumps(choice))


def test_the_sweep_can_be_turned_off(tmp_path):
    args = TINY_DIGITS + ["eval.step_sweep=false", "stage1.iterations=4", "stage2.iterations=2", "eval.every=2"]
    out = train("digits", args, out=tmp_path / "r", show_progress=False)
    assert not (out / "sample_steps.json").exists()
    assert load_model(out)[2]["sample_steps"] is None
    # a finished run gets its choice afterwards by resuming it (nothing left to train)
    train(overrides=["eval.step_sweep=true", "eval.step_sweep_samples=20"], resume=out, show_progress=False)
    choice = json.loads((out / "sample_steps.json").read_text())
    assert load_model(out)[2]["sample_steps"] == choice["sample_steps"] and choice["n_samples"] == 20
