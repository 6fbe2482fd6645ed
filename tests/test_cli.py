"""The command line: thin over the library, one clear error line for user mistakes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_DIGITS
from dualat.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "dualat", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize("args, needle", [
    (["train", "no_such_preset"], "not found"),
    (["train", "digits", "stage2.optim.lrr=0.1"], "did you mean stage2.optim.lr"),
    (["train", "fashion_mnist", "data.root=/nonexistent/dir", "--out", "{tmp}/fm"], "data.root"),
    (["train"], "give a config"),
    (["eval", "/nonexistent/run"], "neither a run directory"),
    (["frobnicate"], "invalid choice"),
    (["train", "digits", "--out", "{tmp}/x", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_user_mistakes_give_one_line_and_exit_2(args, needle, tmp_path):
    proc = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dualat: error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr


def test_missing_fashion_mnist_names_the_fix(tmp_path, capsys):
    assert main(["train", "fashion_mnist", f"data.root={tmp_path}", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "apt-get install dataset-fashion-mnist" in err


def test_help_lists_the_verbs():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for verb in ("train", "eval", "train-evalnet"):
        assert verb in proc.stdout


def test_overrides_may_follow_the_options():
    from dualat.cli import _parse
    args = _parse(["study", "digits", "seed=1", "--seeds", "2", "threads=1", "--out", "o"])
    assert args.overrides == ["seed=1", "threads=1"] and args.seeds == 2 and args.out == "o"


def test_train_then_eval_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    tiny = [a for a in TINY_DIGITS if not a.startswith("stage2.iterations")] + ["stage2.iterations=10"]
    assert main(["train", "digits", *tiny, "--out", str(out), "--quiet"]) == 0
    saved = (out / "config.yaml").read_text()
    assert "iterations: 10" in saved
    assert main(["eval", str(out), "--n", "100", "--n-samples", "50", "--steps", "5", "--pgd-steps", "3",
                 "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "robust_acc" in table and "fd_floor_train_vs_test" in table
    metrics = json.loads((out / "eval-ema" / "metrics.json").read_text())
    assert 0 <= metrics["robust_acc"] <= metrics["clean_acc"] <= 1
    assert metrics["fd_floor_train_vs_test"] < metrics["fd_seeds"]   # real data is closer than raw seeds
    assert (out / "eval-ema" / "samples.png").is_file()
    # the same run cannot be started twice into one directory
    assert main(["train", "digits", "--out", str(out), "--quiet"]) == 2


@pytest.mark.parametrize("argv, flag", [
    (["eval", "RUN", "--n", "-5"], "--n/--n-test"),
    (["eval", "RUN", "--n-samples", "0"], "--n-samples"),
    (["eval", "RUN", "--pgd-steps", "-1"], "--pgd-steps"),
    (["explain", "RUN", "--images", "0", "--n", "-2"], "--n"),
    (["study", "digits", "--n-ref", "-3"], "--n-ref"),
    (["train-evalnet", "digits", "--iterations", "0"], "--iterations"),
])
def test_negative_counts_are_refused_with_one_line(argv, flag, capsys):
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dualat: error:")]
    assert len(lines) == 1 and f"argument {flag}: must be at least" in lines[0], lines
