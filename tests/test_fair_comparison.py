"""Pooling sampling-cost results over training seeds (dualat.evaluate.fair, scripts/fair_comparison.py)."""
import importlib.util
import json
from pathlib import Path

import pytest

from dualat.errors import DualatError
from dualat.evaluate.fair import markdown, pool, write

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fair_comparison.py"


def result(path, dat_fd, jem=None, costs=(5, 7)):
    curves = [{"name": "DAT, PGD sampler", "points": [
        {"passes_per_image": float(c), "fd": fd, "precision": 0.8, "recall": 0.5} for c, fd in zip(costs, dat_fd)]}]
    r = {"dataset": "fashion_mnist", "extractor": "evalnet", "n_samples": 2000, "n_ref": 10000, "ref_split": "test",
         "dat": {"path": path}, "jem": None, "curves": curves, "buffer_reference": None}
    if jem is not None:
        curves.append({"name": "JEM, fresh SGLD", "points": [
            {"passes_per_image": 20.0, "fd": jem, "precision": 0.9, "recall": 0.6}]})
        r["jem"] = {"path": "runs/jem"}
        r["buffer_reference"] = {"name": "JEM replay buffer", "fd": 0.4, "precision": 0.7, "recall": 0.8}
    return r


def test_pool_gives_mean_and_sd_per_curve_and_cost(tmp_path):
    rs = [result("a", [1.0, 0.5], jem=1.2), result("b", [2.0, 0.7]), result("c", [3.0, 0.9], costs=(5, 10))]
    p = pool(rs, seeds_alone=[3.1, 3.3])
    dat = next(c for c in p["curves"] if c["name"].startswith("DAT"))
    assert dat["runs"] == 3 and [pt["passes_per_image"] for pt in dat["points"]] == [5.0]   # 7 and 10: not in all
    fd = dat["points"][0]["fd"]
    assert fd["mean"] == pytest.approx(2.0) and fd["sd"] == pytest.approx(1.0) and fd["n"] == 3
    jem = next(c for c in p["curves"] if c["name"].startswith("JEM"))
    assert jem["runs"] == 1 and jem["points"][0]["fd"]["sd"] is None
    assert p["seeds_alone_fd"]["mean"] == pytest.approx(3.2) and p["jem_runs"] == ["runs/jem"]
    md = markdown(p)
    assert "| 5 | 2.000 ± 1.000 (0.800 / 0.500) |" in md and "1.200 (1 run)" in md and "seeds alone: FD 3.200" in md
    files = write(p, tmp_path / "o")
    assert files["figure"].stat().st_size > 1000 and json.loads(files["json"].read_text())["runs"] == 3


def test_pool_refuses_results_of_different_protocols():
    other = result("b", [1.0, 1.0])
    other["n_samples"] = 500
    with pytest.raises(DualatError, match="differ in n_samples"):
        pool([result("a", [1.0, 1.0]), other])
    with pytest.raises(DualatError, match="at least one"):
        pool([])


def test_script_pools_folders_and_reports_a_missing_one(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("fair_comparison", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, fd in (("s1", [1.0, 0.5]), ("s2", [2.0, 0.7])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sampling_cost.json").write_text(json.dumps(result(name, fd)))
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "metrics.json").write_text(json.dumps({"fd_seeds": 3.0}))
    assert mod.main([str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "o"),
                     "--seeds-alone", str(tmp_path / "e")]) == 0
    assert "1.500 ± 0.707" in capsys.readouterr().out and (tmp_path / "o" / "fair_comparison.png").is_file()
    assert mod.main([str(tmp_path / "nope"), "--out", str(tmp_path / "o2")]) == 2
    assert "not found" in capsys.readouterr().err
