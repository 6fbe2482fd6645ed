"""scripts/gpu_check.sh: its CPU quick path runs end to end (harness + preset on synthetic data)
and prints images/s of both steps and the peak memory. No timing is asserted."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _run(*args, tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "DUALAT_CACHE": str(tmp_path / "cache")}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


def test_cpu_quick_path_runs_and_prints_the_figures(tmp_path):
    out = tmp_path / "check"
    done = _run("--device", "cpu", "--quick", "--out", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    bench = json.loads((out / "bench.json").read_text())
    assert bench["quick"] and bench["models"]["small_cnn"]["step"]["lib_images_per_s"] > 0
    preset = json.loads((out / "preset.json").read_text())
    assert preset["preset"] == "cifar10_wrn34" and preset["device"] == "cpu" and preset["precision"] == "float32"
    assert preset["stage1"]["images_per_s"] > 0 and preset["stage2"]["images_per_s"] > 0
    assert preset["peak_memory"]["bytes"] > 0
    text = done.stdout
    assert "small_cnn" in text and "library" in text and "straightforward" in text
    assert "stage 1:" in text and "stage 2:" in text and text.count("images/s") >= 4 and "peak memory" in text


def test_a_wrong_option_is_one_clear_line(tmp_path):
    done = _run("--devise", "cpu", tmp_path=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "gpu_check.sh: unknown option --devise (use --device cuda|cpu, --quick, --out DIR)"
