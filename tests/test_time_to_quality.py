"""benchmarks.time_to_quality reads a run's periodic evaluations and reports when it first
reached the thresholds, in wall and CPU time, and the evaluation's share of the wall time."""
import json
import sys
from pathlib import Path

import pytest

from conftest import TINY_DIGITS

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import time_to_quality as ttq  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from dualat.training import train
    out = tmp_path_factory.mktemp("ttq") / "run"
    return train("digits", TINY_DIGITS + ["device=cpu", "eval.every=5"], out=out, show_progress=False)


def test_first_reach_of_thresholds_the_run_reaches(run, tmp_path):
    evals = [r for r in ttq.read_records(run) if r.get("event") == "eval"]
    assert len(evals) == 4 and all({"eval_wall_s", "eval_cpu_s", "cpu_s"} <= set(r) for r in evals)
    # thresholds taken from the run itself: its best FD, and its robust accuracy at the last evaluation
    fd_max = min(r["fd"] for r in evals)
    acc_min = evals[-1]["robust_acc"]
    want_fd = next(r["iteration"] for r in evals if r["fd"] <= fd_max)
    want_acc = next(r["iteration"] for r in evals if r["robust_acc"] >= acc_min)
    want_both = next(r["iteration"] for r in evals if r["fd"] <= fd_max and r["robust_acc"] >= acc_min)
    res = ttq.main([str(run), "--fd", str(fd_max), "--robust", str(acc_min), "--json", str(tmp_path / "t.json"),
                    "--md", str(tmp_path / "t.md")])[0]
    assert (res["fd"]["iteration"], res["robust"]["iteration"], res["both"]["iteration"]) == (want_fd, want_acc,
                                                                                              want_both)
    assert 0 < res["fd"]["wall_s"] <= res["total_wall_s"] and res["fd"]["cpu_s"] > 0
    assert res["both"]["wall_s"] >= max(res["fd"]["wall_s"], res["robust"]["wall_s"])
    assert res["precision"] == "float32" and res["finished"] and res["evaluations"] == 4
    assert 0 < res["eval_share"] < 1
    assert res["eval_wall_s"] == pytest.approx(sum(r["eval_wall_s"] for r in evals), abs=0.2)
    assert json.loads((tmp_path / "t.json").read_text())[0]["both"]["iteration"] == want_both
    assert "periodic eval share" in (tmp_path / "t.md").read_text()
    never = ttq.time_to_quality(run, fd_max=-1.0, robust_min=1.01)  # thresholds no run reaches
    assert never["fd"] is None and never["robust"] is None and never["both"] is None
    assert "not reached" in ttq.markdown([never])


def test_resumed_sessions_add_up_and_the_downtime_is_not_counted(tmp_path):
    recs = [{"time": 100.0, "event": "start", "cpu_s": 1.0},
            {"time": 110.0, "stage": 2, "iteration": 5, "event": "eval", "fd": 5.0, "robust_acc": 0.5,
             "cpu_s": 19.0, "eval_wall_s": 2.0},
            {"time": 500.0, "event": "resume", "cpu_s": 2.0},  # killed after t=110, resumed much later
            {"time": 520.0, "stage": 2, "iteration": 10, "event": "eval", "fd": 3.0, "robust_acc": 0.7,
             "cpu_s": 40.0, "eval_wall_s": 3.0},
            {"time": 521.0, "event": "done", "cpu_s": 41.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = ttq.time_to_quality(tmp_path, fd_max=3.5, robust_min=0.63)
    assert res["both"] == {"iteration": 10, "wall_s": 30.0, "cpu_s": 56.0, "fd": 3.0, "robust_acc": 0.7}
    assert res["total_wall_s"] == 31.0 and res["total_cpu_s"] == 57.0
    assert res["eval_share"] == pytest.approx(5.0 / 31.0)
    assert res["precision"] == "not logged"


def test_the_robust_bar_is_the_runs_own_stage_1_and_a_borrowed_stage_1_is_charged(tmp_path):
    """Default bar: stage 1's robust accuracy - 1.5 points; a run from stage1.init=OTHER/stage1.pt with
    stage1.iterations=0 gets OTHER's whole wall and CPU time added to every time it reports."""
    parent, child = tmp_path / "s1", tmp_path / "g"
    parent.mkdir(), child.mkdir()
    (parent / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"time": 0.0, "event": "start", "cpu_s": 0.0}, {"time": 50.0, "event": "done", "cpu_s": 80.0}]))
    (child / "config.yaml").write_text(f"stage1:\n  init: {parent / 'stage1.pt'}\n  iterations: 0\n")
    (child / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"time": 100.0, "event": "start", "cpu_s": 0.0},
        {"time": 101.0, "event": "stage1_eval", "stage": 1, "iteration": 0, "robust_acc": 0.70},
        {"time": 110.0, "stage": 2, "iteration": 5, "event": "eval", "fd": 0.9, "robust_acc": 0.68, "cpu_s": 10.0},
        {"time": 120.0, "stage": 2, "iteration": 10, "event": "eval", "fd": 0.8, "robust_acc": 0.69, "cpu_s": 20.0},
        {"time": 121.0, "event": "done", "cpu_s": 21.0}]))
    res = ttq.time_to_quality(child)
    assert res["thresholds"]["robust_min"] == pytest.approx(0.685) and res["stage1_from"] == str(parent)
    assert res["fd"]["iteration"] == 5 and res["robust"]["iteration"] == res["both"]["iteration"] == 10
    assert res["both"]["wall_s"] == 70.0 and res["both"]["cpu_s"] == 100.0 and res["total_wall_s"] == 71.0
    assert f"{parent} (50 s)" in ttq.markdown([res])
    (child / "config.yaml").write_text("stage1:\n  iterations: 800\n")
    assert ttq.time_to_quality(child)["stage1_from"] is None
