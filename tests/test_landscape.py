"""`dualat landscape`: the figure of a tiny toy2d run exists, and DAT's energy is lower on the
training points than far from every class (the corners of the square)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dualat.cli import main
from dualat.errors import DualatError
from dualat.data import load_dataset
from dualat.landscape import CORNERS, colormap, landscape

TINY_TOY = ["stage1.iterations=200", "stage2.iterations=100", "stage2.t_init=2", "eval.every=100",
            "log.every=20", "log.checkpoint_every=100", "threads=1"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "run"
    assert main(["train", "toy2d", *TINY_TOY, "--out", str(out), "--quiet"]) == 0
    return out


def test_landscape_draws_stage1_and_dat_and_dat_energy_is_low_on_the_data(toy_run, capsys):
    png = toy_run / "fig" / "toy_landscape.png"
    assert main(["landscape", str(toy_run), "--out", str(png), "--resolution", "48", "--paths", "4", "--quiet"]) == 0
    assert str(png) in capsys.readouterr().out
    img = Image.open(png)
    assert img.width > 2 * 300 and img.height > 300              # two panels side by side
    record = json.loads(png.with_suffix(".json").read_text())
    stage1, dat = record["panels"]
    assert stage1["checkpoint"]["checkpoint"] == "stage1" and dat["checkpoint"]["checkpoint"] == "ema"
    # DAT: each corner of the square that lies far from every class (> 0.25 from every training
    # point: three of the four; (1, 0) is 0.2 from the corner blob) has higher energy than the data
    train = load_dataset("toy2d").x
    far = [e for c, e in zip(CORNERS, dat["energy_corners"]) if torch.cdist(torch.tensor([c]), train).min() > 0.25]
    assert len(far) == 3 and dat["energy_train_mean"] < min(far), dat
    assert dat["area_below_median_train"] < 0.5
    assert record["sampler"]["n"] == 4 and 0 <= dat["samples_near_data"] <= 1


def test_more_runs_add_panels_and_a_toy2d_report_shows_the_landscape(toy_run, tmp_path):
    from dualat.report import report
    rec = landscape([toy_run, toy_run], out=tmp_path / "l.png", resolution=16, n_paths=2, checkpoints=["ema"])
    assert [p["checkpoint"]["checkpoint"] for p in rec["panels"]] == ["ema", "stage1", "ema"]
    page = report(toy_run, tmp_path / "report.html")
    assert (toy_run / "landscape.png").is_file() and "landscape.png" in page.read_text()


def test_landscape_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(DualatError, match="not a run directory"):
        landscape(tmp_path)
    low, high = colormap(np.array([0.0, 1.0]))
    assert low.sum() < high.sum()                                 # dark = low energy, bright = high
