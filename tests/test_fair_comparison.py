"""Pooling sampling-cost results over training seeds (dualat.evaluate.fair, scripts/fair_comparison.py)."""
import importlib.util
import json
from pathlib import Path

import pytest

from dualat.errors import DualatError
from dualat.evaluate.fair import markdown, pool, select, write

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fair_comparison.py"


def result(path, dat_fd, jem=None, costs=(5, 7)):
    curves = [{"name": "DAT, PGD sampler", "method": "dat", "points": [
        {"passes_per_image": float(c), "fd": fd, "precision": 0.8, "recall": 0.5} for c, fd in zip(costs, dat_fd)]}]
    r = {"dataset": "fashion_mnist", "extractor": "evalnet", "n_samples": 2000, "n_ref": 10000, "ref_split": "test",
         "dat": {"path": path}, "jem": None, "curves": curves, "buffer_reference": None}
    if jem is not None:
        curves.append({"name": "JEM, fresh SGLD", "method": "jem", "points": [
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


def test_select_keeps_curves_by_kind_and_labels_them():
    r = result("a", [1.0, 0.5], jem=1.2)
    only_jem = select(r, ["jem"])
    assert [c["name"] for c in only_jem["curves"]] == ["JEM, fresh SGLD"] and only_jem["dat"] is None
    assert only_jem["buffer_reference"]["fd"] == 0.4 and r["curves"][0]["name"] == "DAT, PGD sampler"  # a copy
    dat = select(r, ["dat"], label="long")
    assert [c["name"] for c in dat["curves"]] == ["DAT, PGD sampler (long)"]
    assert dat["buffer_reference"] is None and dat["jem"] is None and dat["dat"] == {"path": "a"}
    # two recipes' DAT curves and one JEM curve from runs measured for JEM only: three separate curves
    p = pool([select(result("a", [1.0, 0.5]), ["dat"]), select(result("b", [2.0, 0.7]), ["dat"]),
              select(result("c", [0.6, 0.4]), ["dat"], "long"), select(result("d", [9.0, 9.0], jem=1.4), ["jem"])])
    assert {c["name"]: c["runs"] for c in p["curves"]} == {"DAT, PGD sampler": 2, "DAT, PGD sampler (long)": 1,
                                                          "JEM, fresh SGLD": 1}
    assert p["dat_runs"] == ["a", "b", "c"] and p["jem_runs"] == ["runs/jem"]
    with pytest.raises(DualatError, match="unknown curve kind 'sgld'"):
        select(r, ["sgld"])
    with pytest.raises(DualatError, match="has no jem curve"):
        select(result("b", [1.0, 1.0]), ["jem"])


def test_script_selects_curves_and_pools_labelled_groups(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("fair_comparison", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, fd, jem in (("s1", [1.0, 0.5], 1.2), ("s2", [2.0, 0.7], 1.6), ("l1", [0.5, 0.4], None),
                          ("l2", [0.7, 0.6], None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sampling_cost.json").write_text(json.dumps(result(name, fd, jem=jem)))
    t = str(tmp_path)
    assert mod.main([f"{t}/s1#jem", f"{t}/s2#jem", "--out", f"{t}/o", "--group", "stage 2 x 2", f"{t}/l1#dat",
                     f"{t}/l2"]) == 0
    out = capsys.readouterr().out
    assert "DAT, PGD sampler (stage 2 x 2): 2" in out and "JEM, fresh SGLD: 2" in out
    assert "| 5 |  | 0.600 ± 0.141 (0.800 / 0.500) |" in out and "1.400 ± 0.283" in out
    assert "DAT, PGD sampler:" not in out                       # s1/s2's DAT curves were left out
    assert mod.main([f"{t}/s1#sgld", "--out", f"{t}/o2"]) == 2
    assert "unknown curve kind 'sgld'" in capsys.readouterr().err
    assert mod.main(["--out", f"{t}/o3", "--group", "lonely"]) == 2
    assert "names no result" in capsys.readouterr().err
    assert mod.main(["--out", f"{t}/o4"]) == 2
    assert "at least one" in capsys.readouterr().err
