"""`dualat study` on a tiny digits configuration: every method, every row, the table, the page."""
import json
import re

import pytest

from conftest import TINY_DIGITS
from dualat.cli import main
from dualat.errors import DualatError
from dualat.study import ROWS, study

TINY_JEM = ["jem.iterations=8", "jem.batch_size=16", "jem.buffer_size=32", "jem.sgld_steps=2"]
ABL = ["auc_threshold_0.6", "t_max_20"]   # digits has t_max 20: that one is skipped
SIZES = dict(n_autoattack=0, n_samples=20, n_ref=40, n_test=40, sample_steps=3, sgld_steps=3)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "s"
    study("digits", seeds=2, out=out, overrides=TINY_DIGITS + TINY_JEM, ablations=ABL,
          show_progress=False, **SIZES)
    return out


def test_study_table_has_every_method_with_mean_and_std(tiny_study):
    results = json.loads((tiny_study / "results.json").read_text())
    assert list(results["table"]) == [name for name, *_ in ROWS]
    for name, rows in results["rows"].items():
        assert [r["seed"] for r in rows] == [0, 1]
        assert all(r["clean_acc"] is not None and r["fd"] is not None for r in rows), name
    md = (tiny_study / "results.md").read_text()
    assert md.count(" ± ") > 20 and "Divergences: none" in md and "auc_threshold_0.6" in md
    # the command line in results.md names every option that differs from the CLI's defaults
    assert "--n-autoattack 0 --n-samples 20 --n-ref 40 --n-test 40 --steps 3 --sgld-steps 3 --ablations auc_threshold_0.6,t_max_20" in md
    assert "Ablations skipped because the config already has their settings: t_max_20 (`stage2.t_max=20`)." in md
    assert results["ablations_skipped"] == {"t_max_20": ["stage2.t_max=20"]} and list(results["ablations"]) == ["auc_threshold_0.6"]
    assert not (tiny_study / "ablations" / "t_max_20").exists()
    import dualat
    for run in ("seed0/plain", "seed1/dat", "seed1/jem", "ablations/auc_threshold_0.6"):   # which code trained each run
        assert re.search(rf"- `{run}`: dualat {re.escape(dualat.__version__)}.*1 start/resume", md), run
    dat = results["rows"]["DAT"][0]
    at = results["rows"]["adversarial training (stage 1)"][0]
    assert dat["passes_M"] > at["passes_M"] > results["rows"]["plain classifier"][0]["passes_M"]


def test_study_report_images_exist(tiny_study):
    text = (tiny_study / "report.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', text)
    assert len(srcs) >= 6 and any("ablation-auc_threshold_0.6" in src for src in srcs)
    assert "<code>dualat study digits --seeds 2" in text and "`" not in text.split("<h2>")[0]
    for src in srcs:
        assert (tiny_study / src).is_file(), src


def test_study_resumes_without_retraining(tiny_study):
    before = (tiny_study / "seed0" / "dat" / "last.pt").stat().st_mtime_ns
    study("digits", seeds=2, out=tiny_study, overrides=TINY_DIGITS + TINY_JEM, ablations=ABL,
          show_progress=False, **SIZES)
    assert (tiny_study / "seed0" / "dat" / "last.pt").stat().st_mtime_ns == before


def test_study_bad_arguments_are_one_line(tmp_path, capsys):
    with pytest.raises(DualatError, match="unknown ablation"):
        study("digits", seeds=1, out=tmp_path, ablations=["bn"])
    assert main(["study", "digits", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err


def test_claims_share_work_and_stale_claims_are_taken(tmp_path):
    import socket
    import subprocess
    import sys

    from dualat.worklock import claim
    lock = tmp_path / "c" / "x"
    with claim(lock) as first:
        assert first and lock.is_file()
        with claim(lock) as second:
            assert not second                       # held by a live process (this one)
    assert not lock.exists()                        # released
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    with claim(lock) as taken:
        assert taken                                # its owner is gone: stale, taken over


def test_study_skips_what_another_process_claimed(tiny_study, monkeypatch):
    import shutil

    import dualat.study as st
    abl = tiny_study / "ablations" / "auc_threshold_0.6"     # as if killed before its first checkpoint
    for p in abl.iterdir():
        if p.name != "config.yaml":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    (tiny_study / "seed1" / "jem" / "eval-study-model-sgld" / "metrics.json").unlink()
    calls = []
    monkeypatch.setattr(st.time, "sleep", lambda s: calls.append(s) or claimed.unlink())
    claimed = tiny_study / ".claims" / "seed1-jem-model-sgld"
    claimed.parent.mkdir(exist_ok=True)
    claimed.write_text(json.dumps({"host": "another-machine", "pid": 1}))
    study("digits", seeds=2, out=tiny_study, overrides=TINY_DIGITS + TINY_JEM, ablations=ABL,
          show_progress=False, **SIZES)
    assert calls == [60]                            # waited once for the other process, then did the row
    assert (abl / "summary.json").is_file() and list(abl.parent.glob("auc_threshold_0.6.unstarted-*/config.yaml"))
    assert (tiny_study / "seed1" / "jem" / "eval-study-model-sgld" / "metrics.json").is_file()
    fresh = json.loads((tiny_study / "results.json").read_text())["rows"]["JEM (fresh SGLD chains)"]
    buffer = json.loads((tiny_study / "results.json").read_text())["rows"]["JEM (replay buffer)"]
    assert [r["clean_acc"] for r in fresh] == [r["clean_acc"] for r in buffer]


def test_ablations_the_config_already_has_are_skipped():
    from dualat.study import ABLATIONS, no_op_ablations
    keep, skipped = no_op_ablations("fashion_mnist", [], list(ABLATIONS))   # Gaussian seeds, AUC threshold 0.6
    assert set(skipped) == {"auc_threshold_0.6", "gaussian_seeds"} and "auc_threshold_0.8" in keep
    keep, skipped = no_op_ablations("fashion_mnist", ["data.seeds=patches", "stage2.auc_threshold=0.8"],
                                    list(ABLATIONS))                         # the paper's recipe
    assert set(skipped) == {"auc_threshold_0.8", "patch_seeds"} and {"gaussian_seeds", "auc_threshold_0.6"} <= set(keep)


def test_report_shows_the_sampling_cost_and_fair_comparison_figures(tiny_study, tmp_path):
    import shutil

    from dualat.study import table_view
    from dualat.study_report import study_report
    out = tmp_path / "s"
    shutil.copytree(tiny_study, out)
    png = next((out / "report_files").glob("*.png"))
    for folder in ("sampling_cost", "fair_comparison"):
        (out / folder).mkdir()
        shutil.copyfile(png, out / folder / f"{folder}.png")
        (out / folder / f"{folder}.md").write_text(f"| passes / image | {folder} table |")
    results = json.loads((out / "results.json").read_text())
    text = study_report(out, results, table_view(results)).read_text()
    assert "<h2>Sampling cost: FD of fresh samples" in text and "<h2>The fair comparison over training seeds" in text
    assert "fair_comparison table" in text and (out / "report_files" / "fair-comparison_fair_comparison.png").is_file()


def test_passes_follow_a_stage1_taken_from_another_run(tiny_study, tmp_path):
    """A DAT run whose stage 1 came by `stage1.init` counts that run's stage 1 (it used to read 0)."""
    import math
    import shutil
    from dualat.config import load_config, save_config
    from dualat.study_runs import passes_and_wall
    source = tiny_study / "seed0" / "dat"
    adopted = tmp_path / "adopted"
    adopted.mkdir()
    for name in ("summary.json", "metrics.jsonl"):
        shutil.copy(source / name, adopted / name)
    save_config(load_config(source / "config.yaml", ["stage1.iterations=0", f"stage1.init={source / 'stage1.pt'}"]),
                adopted / "config.yaml")
    summary = json.loads((adopted / "summary.json").read_text())
    summary["stage1"]["wall_s"] = 0.0                      # what a run trained from stage1.init records
    (adopted / "summary.json").write_text(json.dumps(summary))
    for which in ("stage1", "ema"):
        assert passes_and_wall(adopted, which) == passes_and_wall(source, which), which
    assert passes_and_wall(adopted, "stage1")[0] > 0
    bare = tmp_path / "elsewhere"                           # a checkpoint outside any run directory
    bare.mkdir()
    shutil.copy(source / "stage1.pt", bare / "stage1.pt")
    save_config(load_config(adopted / "config.yaml", [f"stage1.init={bare / 'stage1.pt'}"]), adopted / "config.yaml")
    assert all(math.isnan(x) for x in passes_and_wall(adopted, "stage1"))
