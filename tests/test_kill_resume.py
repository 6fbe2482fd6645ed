"""kill -9 at random moments: checkpoints are never half-written, and resuming until the run
completes gives the same weights and metrics, bit for bit, as a run that was never killed."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY_DIGITS
from dualat.atomic import remove_stale_tmp
from dualat.checkpoint import atomic_save, safe_load

SRC = str(Path(__file__).resolve().parents[1] / "src")
# every line of progress is logged, and a checkpoint falls every 3 iterations (TINY_DIGITS: 40 + 20)
ARGS = TINY_DIGITS + ["log.every=1", "log.checkpoint_every=3"]
S1 = 40


def _env() -> dict:
    # the same thread count as this process, so both runs do the same arithmetic
    return dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
                OMP_NUM_THREADS=str(torch.get_num_threads()))


def _start(out: Path) -> subprocess.Popen:
    """A fresh run, or a resume when the run directory already holds its config snapshot."""
    tail = ["--resume", str(out)] if (out / "config.yaml").is_file() else ["digits", *ARGS, "--out", str(out)]
    return subprocess.Popen([sys.executable, "-m", "dualat", "train", *tail, "--quiet"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


class Progress:
    """Progress of the current process: stage-1 iteration, or 40 + stage-2 iteration, read from
    the complete log lines it appended (new bytes only, so polling stays cheap)."""

    def __init__(self, out: Path):
        self.path = out / "metrics.jsonl"
        self.offset = self.path.stat().st_size if self.path.is_file() else 0
        self.position = -1

    def __call__(self) -> int:
        if self.path.is_file():
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
            complete = data[: data.rfind(b"\n") + 1]
            self.offset += len(complete)
            for line in complete.splitlines():
                rec = json.loads(line)
                if isinstance(rec.get("iteration"), int) and rec.get("stage") in (1, 2):
                    self.position = max(self.position, rec["iteration"] + (S1 if rec["stage"] == 2 else 0))
        return self.position


def _check_files_whole(out: Path) -> list[str]:
    """Every checkpoint and the config snapshot in `out` must load completely."""
    names = []
    for p in sorted(out.iterdir()):
        if p.suffix in (".pt", ".safetensors"):
            safe_load(p)
            names.append(p.name)
    if (out / "config.yaml").is_file():
        assert isinstance(yaml.safe_load((out / "config.yaml").read_text()), dict)
    return names


def _tensors(obj, prefix=""):
    """Flatten nested dicts/lists of a checkpoint into {path: tensor or value}."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_tensors(v, f"{prefix}{k}/"))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_tensors(v, f"{prefix}{i}/"))
        return out
    return {prefix: obj}


def _same(a, b, skip=("elapsed", "wall_s", "rng/", "config/")):
    """Bit-identical nested structures, apart from wall-clock and bookkeeping entries."""
    fa, fb = _tensors(a), _tensors(b)
    keys = [k for k in fa if not any(s in k for s in skip)]
    assert sorted(keys) == sorted(k for k in fb if not any(s in k for s in skip))
    for k in keys:
        if torch.is_tensor(fa[k]):
            assert torch.equal(fa[k], fb[k]), k
        else:
            assert fa[k] == fb[k], k


def _summary(run: Path) -> dict:
    s = json.loads((run / "summary.json").read_text())
    s.pop("run_dir")
    s.pop("wall_s_this_session")
    for stage in ("stage1", "stage2"):
        s[stage].pop("wall_s")
    return s


def test_kill9_at_random_moments_then_resume_is_bit_exact(tmp_path):
    ref = tmp_path / "ref"
    done = subprocess.run([sys.executable, "-m", "dualat", "train", "digits", *ARGS, "--out", str(ref), "--quiet"],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    rng = random.Random(1234)
    # one kill during start-up, then kills at random points of stage 1, the stage boundary and stage 2
    targets = [None, rng.randint(2, 20), rng.randint(21, S1 - 1), S1, rng.randint(S1 + 1, S1 + 10),
               rng.randint(S1 + 11, S1 + 19)]
    out, kills = tmp_path / "killed", []
    for target in targets + ["finish"]:
        progress = Progress(out)
        proc = _start(out)
        if target == "finish":
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err
            break
        if target is None:
            time.sleep(rng.uniform(0.2, 1.5))
        else:
            while proc.poll() is None and progress() < target:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.15))   # lands anywhere in the next iterations / saves
        if proc.poll() is not None:              # finished before the kill: nothing left to test
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        last = safe_load(out / "last.pt") if (out / "last.pt").is_file() else None
        kills.append((target, progress(), last and (last["stage"], last["iteration"]),
                      _check_files_whole(out) if out.is_dir() else []))
    for k in kills:
        print("kill at target", k[0], "- logged position", k[1], "- last.pt (stage, iteration)", k[2],
              "- files whole:", ", ".join(k[3]))
    assert sum(1 for k in kills if k[2] and k[2][0] == 1) >= 1 and sum(1 for k in kills if k[2] and k[2][0] == 2) >= 1
    assert not list(out.glob(".*.tmp"))          # temporary files of killed writers were removed

    for name in ("stage1.pt", "best_fid.pt", "best_robust.pt", "model_ema.safetensors"):
        _same(safe_load(ref / name), safe_load(out / name))
    _same(safe_load(ref / "last.pt"), safe_load(out / "last.pt"))
    assert _summary(ref) == _summary(out)


def test_a_kill_during_atomic_save_leaves_the_previous_file(tmp_path):
    """A writer killed at random moments while replacing a 16 MB file: the file always loads and
    holds one of the two versions; the abandoned temporary file is removed by the next save."""
    target = tmp_path / "state.pt"
    code = ("import sys, torch\nsys.path.insert(0, sys.argv[2])\nfrom dualat.checkpoint import atomic_save\n"
            "print('ready', flush=True)\ni = 0\nwhile True:\n    i += 1\n"
            "    atomic_save({'v': torch.full((4_000_000,), float(i % 2))}, sys.argv[1])\n")
    atomic_save({"v": torch.full((4_000_000,), 1.0)}, target)
    rng = random.Random(7)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", code, str(target), SRC], env=_env(),
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        v = safe_load(target)["v"]
        assert v.shape == (4_000_000,) and float(v[0]) in (0.0, 1.0) and bool((v == v[0]).all())
    remove_stale_tmp(target)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("torn", [b'{"stage": 1, "itera', b""])
def test_resume_cuts_a_torn_log_line(tmp_path, torn):
    from dualat.training.log import MetricLog
    from dualat.ui import read_log
    (tmp_path / "metrics.jsonl").write_bytes(b'{"stage": 1, "iteration": 3}\n' + torn)
    log = MetricLog(tmp_path)
    log.write({"stage": 1, "iteration": 4})
    assert [r["iteration"] for r in read_log(tmp_path)] == [3, 4]
