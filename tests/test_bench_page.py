"""docs/performance.md is rendered whole from the harness's JSON and from finished runs: the date,
the CPU flags and what `amp: auto` picks, the bf16 row ("emulated" without native bf16), the
time-to-quality section, the K table ("not run" for a number no eval holds) and the other
machines' table linking files that exist. Synthetic inputs only; no timing is asserted."""
import copy
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import finished, others, report, run  # noqa: E402
from dualat.config import load_config, save_config  # noqa: E402

BASE = ROOT / "docs" / "performance-2026-11-29-intel.json"  # a real harness result, used as the template


def _log(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _run(dir_: Path, overrides: list[str], *, T=(0.5, 3.0, 7.0), stage1_init: Path | None = None) -> Path:
    """A finished run directory as `dualat train` leaves it (config.yaml, metrics.jsonl)."""
    dir_.mkdir(parents=True)
    ov = list(overrides) + ([f"stage1.init={stage1_init}", "stage1.iterations=0"] if stage1_init else [])
    save_config(load_config("fashion_mnist", ov), dir_ / "config.yaml")
    recs = [{"time": 1000.0, "event": "start", "overrides": ov, "precision": "float32", "cpu_s": 5.0},
            {"time": 1020.0, "event": "stage1_eval", "stage": 1, "iteration": 0, "robust_acc": 0.66}]
    recs += [{"time": 1030.0 + 10 * i, "stage": 2, "iteration": 10 * (i + 1), "T": t} for i, t in enumerate(T)]
    recs += [{"time": 1100.0, "stage": 2, "iteration": 30, "event": "eval", "fd": 0.7, "robust_acc": 0.655,
              "attack": "PGD-10 L2 eps=1", "cpu_s": 60.0, "eval_wall_s": 4.0, "eval_cpu_s": 4.0},
             {"time": 1120.0, "event": "done", "cpu_s": 85.0}]
    _log(dir_ / "metrics.jsonl", recs)
    return dir_


def _eval(dir_: Path, name: str, numbers: dict, checkpoint: str = "ema") -> None:
    m = {"checkpoint": {"path": str(dir_ / "model_ema.safetensors"), "sha256": "abc", "checkpoint": checkpoint},
         "time": "2026-12-07 02:00:00", **numbers}
    (dir_ / name).mkdir()
    (dir_ / name / "metrics.json").write_text(json.dumps(m))


ROBUST = {"clean_acc": 0.7697, "clean_protocol": "first 10000 of 10000 test images, ema weights, eval mode",
          "eps_L2": 1.0, "pgd_L2_acc": 0.6405, "robust_acc": 0.6405,
          "robust_protocol": "untargeted PGD-20 on cross-entropy (dualat.pgd), step 2.5*eps/steps, 1 restart(s), "
                             "no random start; L2 eps=1; first 10000 test images; robust_acc = the run's own norm",
          "compute_dtype": {"clean_acc": "float32", "pgd_L2_acc": "float32", "robust_acc": "float32"}}
AA = {"autoattack_L2_acc": 0.6123, "autoattack_clean_acc": 0.77,
      "autoattack_protocol": "AutoAttack (standard: apgd-ce, apgd-t, fab-t, square), L2 eps=1, first 1000 test "
                             "images, seed 0, model in eval mode on [0,1] inputs; ema weights",
      "compute_dtype": {"autoattack_L2_acc": "float32"}}
GEN = {"fd": 0.5453, "precision": 0.781, "recall": 0.5259, "n_samples": 2000, "n_ref": 10000,
       "ref": "10000 test images", "extractor": "evalnet", "sample_steps": 7,
       "compute_dtype": {"samples": "bfloat16", "features": "float32"}}


@pytest.fixture()
def runs(tmp_path):
    s1 = tmp_path / "s1"
    s1.mkdir()
    save_config(load_config("fashion_mnist", ["stage2.iterations=0"]), s1 / "config.yaml")
    _log(s1 / "metrics.jsonl", [{"time": 0.0, "event": "start", "overrides": ["stage2.iterations=0"], "cpu_s": 1.0},
                                {"time": 900.0, "event": "done", "cpu_s": 600.0}])
    k5 = _run(tmp_path / "g06", [], stage1_init=s1 / "stage1.pt")
    k1 = _run(tmp_path / "k1", ["threat.fast=true"], stage1_init=s1 / "stage1.pt")
    _eval(k5, "eval-robust", {**ROBUST, **AA, "compute_dtype": {**ROBUST["compute_dtype"], **AA["compute_dtype"]}})
    _eval(k5, "eval-gen", GEN)
    _eval(k1, "eval-ema", ROBUST)        # PGD and clean only: no AutoAttack, no FD
    _eval(k1, "eval-stage1", AA, checkpoint="stage1")  # another checkpoint's numbers: not this row's
    return tmp_path, k5, k1


def _result(tmp_path, k5, k1, native: bool) -> dict:
    r = json.loads(BASE.read_text())
    r["machine"]["cpu_flags"] = {"avx2": True, "avx512_bf16": native, "amx_bf16": native}
    r["machine"]["amp_auto"] = "bfloat16" if native else "float32"
    r["machine"]["onednn_bf16"] = native
    for m in r["models"].values():
        m["amp_variant"]["native_bf16"] = native
        m["amp_variant"]["rounds"] = len(m["times"]["lib_amp_step"]["all"])
    r["time_to_quality"] = finished.time_to_quality(f"{k5} {k1}", "--fd 0.8")
    r["k_runs"] = finished.k_table(f"5={k5} 1={k1}")
    r["other_machines"] = others.rows(ROOT / "docs", ROOT / "docs" / "performance.md")
    return r


def test_the_page_holds_date_flags_bf16_ttq_k_table_and_other_machines(runs):
    tmp_path, k5, k1 = runs
    md = report.markdown(_result(tmp_path, k5, k1, native=False), ROOT / "docs" / "performance.json")
    assert "| date | 2026-11-29T05:17:29 |" in md
    assert "avx2 yes, avx512_bf16 no, amx_bf16 no" in md
    assert "what `amp: auto` picks here (`dualat.precision.resolve`) | float32" in md
    assert "| what `amp: true` gives here | float32, with a warning" in md
    bf16 = md.split("## bf16 against float32 (this run)")[1].split("##")[0]
    assert re.search(r"\| small_cnn \| .* \| emulated \|", bf16) and "| native |" not in bf16
    assert "bf16 autocast, emulated" in md
    ttq = md.split("## Time to quality")[1].split("\n## ")[0]
    assert "python -m benchmarks.time_to_quality" in ttq and "--fd 0.8" in ttq and "periodic eval share" in ttq
    assert f"`{k5}`: `dualat train fashion_mnist stage1.init=" in ttq
    k = md.split("## Stage 2's adversarial term")[1].split("\n## ")[0]
    row5 = next(line for line in k.splitlines() if line.startswith("| 5 |"))
    row1 = next(line for line in k.splitlines() if line.startswith("| 1 (fast) |"))
    assert "64.05% (PGD-20, 10,000, float32)" in row5 and "61.23% (standard, 1,000, float32)" in row5
    assert "0.545 (2,000 samples vs 10000 test images, evalnet, bfloat16)" in row5 and "0.781" in row5
    assert "3.5 + 5 input-gradient, 3 training" in row5 and "100 s wall, 80 CPU s" in row5
    assert row1.count("not run") == 4 and "64.05% (PGD-20, 10,000, float32)" in row1   # AA, FD, precision, recall
    assert "skipped:" in k and "stage1 weights, not ema" in k and "threat.fast=true" in k
    assert "stage 1 from" in k and "stage2.iterations=0" in k
    assert "agree in everything but K (threat.*) and threads" in k
    other = md.split("## Other machines and earlier runs")[1]
    links = re.findall(r"\]\(([^)]+\.json)\)", other)
    assert {"performance-2026-11-29-intel.json", "performance-2026-12-01-amd.json",
            "performance-2026-12-02-intel-bf16-runs.json"} <= set(links)
    assert all((ROOT / "docs" / link).is_file() for link in links)
    assert "no raw file in the repository" in other and "2.23" in other


def test_native_bf16_and_the_sections_absent(runs):
    tmp_path, k5, k1 = runs
    r = _result(tmp_path, k5, k1, native=True)
    r["time_to_quality"] = r["k_runs"] = None
    md = report.markdown(r, ROOT / "docs" / "performance.json")
    bf16 = md.split("## bf16 against float32 (this run)")[1].split("##")[0]
    assert "| native |" in bf16 and "emulated |" not in bf16 and "x faster" in bf16
    assert "Not part of this run: `make bench TTQ_RUNS=" in md and "threat.fast=true --out runs/k1" in md
    r2 = copy.deepcopy(r)
    del r2["models"]["preact_resnet18"]["amp_variant"]  # --bf16-models small_cnn
    assert re.search(r"\| preact_resnet18 \| [0-9.]+ s \| not measured in this run \(`--bf16-models`\)",
                     report.markdown(r2, Path("x.json")))
    del r2["models"]["small_cnn"]["amp_variant"]
    assert "not measured in this run (`--no-amp-variant`)" in report.markdown(r2, Path("x.json"))


def test_inputs_are_checked_before_any_timing(tmp_path):
    with pytest.raises(SystemExit, match="not a finished"):
        finished.k_table(f"5={tmp_path}")
    a = run.parse_args(["--k-runs", "5=runs/a 1=runs/b", "--ttq-runs", "runs/a", "--ttq-args=--fd 4.1",
                        "--bf16-rounds", "1", "--bf16-models", "small_cnn"])
    assert (a.k_runs, a.ttq_runs, a.ttq_args, a.bf16_rounds, a.amp_variant) == ("5=runs/a 1=runs/b", "runs/a",
                                                                                  "--fd 4.1", 1, True)
    assert a.bf16_models == ["small_cnn"] and run.parse_args([]).bf16_models == a.models
    with pytest.raises(SystemExit):
        run.parse_args(["--bf16-models", "resnet"])
    assert finished.time_to_quality("") is None and finished.k_table(" ") is None


def test_stale_evaluations_of_other_weights_are_skipped(runs):
    _, k5, _ = runs
    (k5 / "model_ema.safetensors").write_bytes(b"weights")  # its hash is not the metrics' "abc"
    numbers, skipped = finished.evaluations(k5)
    assert numbers == {} and len(skipped) == 2 and all("not the run's current" in s for s in skipped)


def test_rows_that_differ_in_more_than_K_say_so(runs):
    tmp_path, k5, _ = runs
    k3 = _run(tmp_path / "k3", ["threat.steps=3", "stage2.auc_threshold=0.8"])
    assert finished.config_differences([("5", k5), ("3", k3)]) == [
        f"stage1.init (5: {tmp_path / 's1' / 'stage1.pt'}, 3: None)", "stage1.iterations (5: 0, 3: 800)",
        "stage2.auc_threshold (5: 0.6, 3: 0.8)"]


def test_tables_only_rereads_the_finished_runs_into_earlier_timings(runs, tmp_path):
    _, k5, k1 = runs
    timings = json.loads(BASE.read_text())
    js, md = tmp_path / "perf.json", tmp_path / "perf.md"
    js.write_text(json.dumps(timings))
    run.main(["--tables-only", "--json", str(js), "--md", str(md), "--k-runs", f"5={k5} 1={k1}"])
    page, saved = md.read_text(), json.loads(js.read_text())
    assert saved["models"] == timings["models"] and saved["date"] == timings["date"]   # the timings kept
    assert saved["tables_read"]["command"].startswith("python -m benchmarks.run --tables-only")
    assert "| finished-run tables | read again on" in page and "## Stage 2's adversarial term" in page
    row1 = next(line for line in page.splitlines() if line.startswith("| 1 (fast) |"))
    assert row1.count("not run") == 4
    _eval(k1, "eval-aa", AA)                     # an evaluation that ended after the timings
    run.main(["--tables-only", "--json", str(js), "--md", str(md), "--k-runs", f"5={k5} 1={k1}"])
    row1 = next(line for line in md.read_text().splitlines() if line.startswith("| 1 (fast) |"))
    assert "61.23% (standard, 1,000, float32)" in row1 and row1.count("not run") == 3
    with pytest.raises(SystemExit, match="--tables-only needs"):
        run.main(["--tables-only", "--json", str(tmp_path / "none.json"), "--md", str(md)])


def test_the_standard_autoattack_outranks_a_later_custom_one(runs):
    _, k5, _ = runs
    custom = {**AA, "autoattack_L2_acc": 0.6280, "autoattack_protocol": AA["autoattack_protocol"].replace(
        "standard: apgd-ce, apgd-t, fab-t, square", "custom: apgd-ce, apgd-t")}
    _eval(k5, "eval-aa", {**custom, "time": "2026-12-08 00:00:00"})   # ran after the standard one
    numbers, _ = finished.evaluations(k5)
    assert numbers["aa_l2"]["value"] == 0.6123 and numbers["aa_l2"]["version"] == "standard"
    (k5 / "eval-robust" / "metrics.json").unlink()                    # no standard one: the custom one shows
    numbers, _ = finished.evaluations(k5)
    assert numbers["aa_l2"]["value"] == 0.6280 and numbers["aa_l2"]["version"] == "custom"
