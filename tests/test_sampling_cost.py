"""The fair comparison of DAT with JEM at equal sampling cost, on tiny digits runs (seconds)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_DIGITS
from PIL import Image

from dualat.errors import DualatError
from dualat.evaluate.cost import PassCounter, parse_steps
from dualat.evaluate.plot import line_plot, log_ticks, nice_ticks
from dualat.evaluate.sampling_cost import equal_cost_rows, sampling_cost
from dualat.training import train

TINY_JEM = ["method=jem", "jem.iterations=12", "jem.batch_size=16", "jem.buffer_size=64", "jem.sgld_steps=3",
            "jem.optim.warmup=2", "jem.optim.lr=1e-3", "eval.every=6", "eval.n_test=50", "eval.n_samples=30",
            "eval.pgd_steps=2", "eval.evalnet_iterations=60", "log.every=3", "log.checkpoint_every=6"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("cost")
    dat = train("digits", TINY_DIGITS, out=base / "dat", show_progress=False)
    jem = train("digits", TINY_JEM, out=base / "jem", show_progress=False)
    return dat, jem


def test_sampling_cost_counts_passes_and_writes_json_table_figure(runs, tmp_path):
    dat, jem = runs
    res = sampling_cost(dat, jem, tmp_path / "o", n_samples=20, n_ref=60, dat_steps="1,2,4", sgld_steps=[2, 4, 8],
                        k=3, is_splits=2)
    names = [c["name"] for c in res["curves"]]
    assert names == ["DAT, PGD sampler", "stage 1 (adversarial training), PGD sampler",
                     "JEM, fresh SGLD from uniform noise", "JEM, fresh SGLD from per-class Gaussian"]
    for c in res["curves"]:
        assert [p["steps"] for p in c["points"]] == ([1, 2, 4] if c["sampler"] == "pgd" else [2, 4, 8])
        for p in c["points"]:  # counted through a forward hook: one forward+backward per step and sample
            assert p["passes_per_image"] == p["steps"] and p["n"] == 20 and np.isfinite(p["fd"])
            assert p["forward_only_per_image"] == (1 if c["sampler"] == "sgld" else 0)
    dat_fd = [p["fd"] for p in res["curves"][0]["points"]]
    s1_fd = [p["fd"] for p in res["curves"][1]["points"]]
    assert dat_fd != s1_fd  # the stage-1 weights really are other weights
    ref = res["buffer_reference"]
    assert ref["passes_per_image"] is None and "not a sampler" in ref["name"] and np.isfinite(ref["fd"])
    rows = equal_cost_rows(res)
    assert [r["passes_per_image"] for r in rows] == [2, 4]  # the costs both sides reached
    saved = json.loads((tmp_path / "o" / "sampling_cost.json").read_text())
    assert saved["curves"][2]["points"][1]["fd"] == pytest.approx(res["curves"][2]["points"][1]["fd"])
    md = (tmp_path / "o" / "sampling_cost.md").read_text()
    assert "| JEM replay buffer (reference, not a sampler) |" in md and "FD at equal cost" in md
    with Image.open(tmp_path / "o" / "sampling_cost.png") as im:
        assert im.size[0] >= 900 and len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 10


def test_sampling_cost_script_and_errors(runs, tmp_path, capsys):
    dat, jem = runs
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import sampling_cost as script
    assert script.main(["--dat", str(dat), "--out", str(tmp_path / "s"), "--n-samples", "12", "--n-ref", "40",
                        "--dat-steps", "1,2", "--no-stage1", "--quiet"]) == 0
    assert "| DAT, PGD sampler | 2 | 2 |" in capsys.readouterr().out
    assert (tmp_path / "s" / "sampling_cost.png").is_file()
    assert script.main(["--dat", str(jem), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "give a DAT run" in capsys.readouterr().err
    with pytest.raises(DualatError, match="give a JEM run"):
        sampling_cost(dat, dat, n_samples=12, dat_steps="1")
    with pytest.raises(DualatError, match="sgld_steps"):
        sampling_cost(dat, jem, sgld_steps="0,x")


def test_pass_counter_parse_steps_and_plot_helpers(tmp_path):
    import torch
    net = torch.nn.Linear(3, 2)
    with PassCounter(net) as c:
        net(torch.zeros(5, 3).requires_grad_())
        with torch.no_grad():
            net(torch.zeros(2, 3))
    net(torch.zeros(7, 3))  # after exit: not counted
    assert (c.grad, c.nograd) == (5, 2)
    assert parse_steps("10, 20,40") == [10, 20, 40] and parse_steps([5, 1]) == [5, 1]
    for bad in ("0,x", "10,,20", "-1", "2,2", "", "1.5"):
        with pytest.raises(DualatError, match="10,20,40,80"):
            parse_steps(bad)
    assert nice_ticks(0, 9.3) == [0, 2, 4, 6, 8, 10] and log_ticks(10, 160) == [10, 20, 50, 100, 200]
    p = line_plot([{"label": "a", "x": [1, 10, 100], "y": [3.0, 1.0, float("nan")]}], tmp_path / "p.png",
                  hlines=[(0.5, "ref")], logy=True)
    with Image.open(p) as im:
        assert im.getpixel((5, 5)) == (255, 255, 255)


def test_study_report_shows_the_sampling_cost_figure_when_present(tmp_path):
    from dualat.study_report import study_report
    results = {"seeds": 1, "config": {"name": "tiny"}, "table": {}}
    assert "Sampling cost" not in study_report(tmp_path, results).read_text()
    line_plot([{"label": "a", "x": [1, 2], "y": [2.0, 1.0]}], tmp_path / "sampling_cost" / "sampling_cost.png")
    (tmp_path / "sampling_cost" / "sampling_cost.md").write_text("| curve | steps |\n")
    page = study_report(tmp_path, results).read_text()
    assert "Sampling cost: FD of fresh samples" in page and "| curve | steps |" in page
    assert (tmp_path / "report_files" / "sampling-cost_sampling_cost.png").is_file()
