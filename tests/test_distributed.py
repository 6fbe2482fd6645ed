"""Multi-process training: `torchrun --standalone --nproc_per_node=2 -m dualat train digits`
with gloo on the CPU, against a single process with the same global batch."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_DIGITS
from dualat.checkpoint import safe_load
from dualat.data import load_dataset
from dualat.errors import DualatError
from dualat.evaluate import clean_accuracy, pgd_accuracy
from dualat.evaluate.run import evaluate
from dualat.loading import load_model
from dualat.sample import sample_to_dir
from dualat.training import train
from dualat.distributed import parameter_digest
from dualat.ui import read_log

# global batches of 64 (32 per process); short enough for three launches in well under a minute
DDP_DIGITS = TINY_DIGITS + ["stage1.iterations=20", "stage2.iterations=12", "eval.every=6", "log.every=3",
                            "log.checkpoint_every=6", "device=cpu"]


def torchrun(*args, verb: str = "train", nproc: int = 2) -> subprocess.CompletedProcess:
    """`dualat VERB ARGS` in `nproc` processes; the environment (DUALAT_CACHE of conftest,
    PYTHONPATH) is passed on; --standalone picks a free port."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "dualat", verb, *map(str, args), "--quiet"]
    p = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    return p


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    p = torchrun("digits", *DDP_DIGITS, "--out", out)
    assert p.stdout.count("run directory:") == 1  # rank 0 alone reports
    return out


def test_ranks_stay_in_lockstep_and_rank0_writes_one_loadable_checkpoint(ddp_run):
    last = safe_load(ddp_run / "last.pt")
    assert last["world_size"] == 2 and last["iteration"] == 12 and len(last["ranks"]) == 2
    r0, r1 = last["ranks"]
    # the same curriculum decisions on both ranks, and T moved up from t_init=2
    assert r0["T"] == r1["T"] == last["curriculum"]["T"] > 2
    # identical parameters on both ranks after 12 stage-2 steps, and they are the ones saved
    model, _, _ = load_model(ddp_run, "last")
    assert r0["params_sha256"] == r1["params_sha256"] == parameter_digest(model)
    # each rank resumes its own shard and random streams
    assert [r["streams"]["real"]["rank"] for r in last["ranks"]] == [0, 1]
    assert not torch.equal(r0["generators"]["pgd"], r1["generators"]["pgd"])
    assert not torch.equal(r0["generators"]["seeds"], r1["generators"]["seeds"])
    assert not torch.equal(r0["streams"]["real"]["generator"], r1["streams"]["real"]["generator"])
    # one run directory written once: one log, no per-rank or half-written files
    names = sorted(p.name for p in ddp_run.iterdir())
    assert names == ["best_fid.pt", "best_robust.pt", "config.yaml", "last.pt", "metrics.jsonl",
                     "model_ema.safetensors", "sample_steps.json", "samples", "stage1.pt", "summary.json"]
    events = [r.get("event") for r in read_log(ddp_run)]
    assert events.count("start") == 1 and events.count("done") == 1 and "ranks_differ" not in events
    assert json.loads((ddp_run / "summary.json").read_text())["stage2"]["T_final"] == r0["T"]


def test_split_evaluation_equals_one_process_evaluation(ddp_run):
    """The periodic evaluation shares the test images between the ranks and sums the counts."""
    ev = [r for r in read_log(ddp_run) if r.get("event") == "eval"][-1]
    model, cfg, _ = load_model(ddp_run)  # the EMA weights the evaluation used
    test = load_dataset("digits", "test")
    assert ev["clean_acc"] == pytest.approx(clean_accuracy(model, test, 100), abs=0.011)
    assert ev["robust_acc"] == pytest.approx(pgd_accuracy(model, test, 100, "L2", 0.5, 3), abs=0.011)


def test_losses_match_one_process_with_the_same_global_batch(ddp_run, tmp_path):
    """Both runs see the same global batches (BatchStream shards one permutation); they differ
    only where the processes legitimately do: stage-1 BatchNorm statistics of each process's
    half batch, and each process's own PGD random starts and seed images. Measured on this
    setting (torch 2.13 CPU): at most 4% apart per logged window in stage 1 (the BatchNorm
    difference compounds), 0.4% in stage 2 (frozen BN); tolerated: 10% and 5%."""
    single = train("digits", DDP_DIGITS, out=tmp_path / "single", show_progress=False)

    def losses(run):
        return {(r["stage"], r["iteration"]): r["loss"] for r in read_log(run) if "loss" in r}

    a, b = losses(ddp_run), losses(single)
    assert a.keys() == b.keys() and len(a) == 11
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=0.10 if key[0] == 1 else 0.05), key
    # digits' AUC stays far above the 0.8 threshold, so both raise T at every full window
    t_ddp = json.loads((ddp_run / "summary.json").read_text())["stage2"]["T_final"]
    assert t_ddp == json.loads((single / "summary.json").read_text())["stage2"]["T_final"]


def test_resume_under_ddp_continues_bit_exactly(ddp_run, tmp_path):
    short = tmp_path / "short"
    torchrun("digits", *DDP_DIGITS, "stage2.iterations=6", "--out", short)
    torchrun("--resume", short, "stage2.iterations=12")
    a, b = safe_load(ddp_run / "last.pt"), safe_load(short / "last.pt")
    assert a["curriculum"] == b["curriculum"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k, v in a["ema"]["model"].items():
        assert torch.equal(v, b["ema"]["model"][k]), k
    for ra, rb in zip(a["ranks"], b["ranks"]):
        assert torch.equal(ra["generators"]["seeds"], rb["generators"]["seeds"])


def test_sampling_shares_batches_and_gives_the_one_process_samples(ddp_run, tmp_path):
    """Five batches of 4 go round-robin to two processes; every process draws every batch's seeds,
    so the samples are those of one process (up to float rounding: at most 1/255 per pixel).
    `--number`, not `--n`: torchrun's own parser takes `--n` for an abbreviation of its options."""
    args = ["--number", 20, "--batch-size", 4, "--trajectory", 2, "--png", "--device", "cpu"]
    p = torchrun(ddp_run, *args, "--out", tmp_path / "two", verb="sample")
    assert p.stdout.count("20 samples") == 1
    one = sample_to_dir(ddp_run, tmp_path / "one", n=20, batch_size=4, trajectory=2, png=True, device="cpu",
                        show_progress=False)
    a, b = np.load(tmp_path / "two" / "samples.npz"), np.load(tmp_path / "one" / "samples.npz")
    assert np.array_equal(a["y"], b["y"]) and np.abs(a["x"].astype(int) - b["x"]).max() <= 1
    assert len(list((tmp_path / "two" / "png").glob("*.png"))) == 20
    # the trajectory's 10 rows come from batches of both processes
    ta, tb = (np.asarray(Image.open(tmp_path / d / "trajectory.png"), dtype=int) for d in ("two", "one"))
    assert ta.shape == tb.shape and np.abs(ta - tb).max() <= 1
    record = json.loads((tmp_path / "two" / "sample.json").read_text())
    assert record["processes"] == 2
    assert record["mean_logsumexp_samples"] == pytest.approx(one["mean_logsumexp_samples"], rel=1e-4)


def test_eval_shares_accuracy_autoattack_and_sampling(ddp_run, tmp_path):
    """`dualat eval` in two processes gives one process's numbers: the shared parts (clean, PGD and
    AutoAttack accuracy; sample generation) are per-image computations, the rest runs alike."""
    args = ["--robust", "--generative", "--n-test", 60, "--norm", "L2", "--pgd-steps", 3, "--autoattack",
            "--aa-version", "custom", "--aa-iters", 2, "--n-samples", 40, "--device", "cpu"]
    torchrun(ddp_run, *args, "--out", tmp_path / "two", verb="eval")
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    one = evaluate(ddp_run, robust=True, generative=True, ood=False, calibrate=False, n=60, norm="L2", pgd_steps=3,
                   autoattack=True, aa_version="custom", aa_n_iter=2, n_samples=40, device="cpu",
                   show_progress=False)
    assert two["processes"] == 2 and one["processes"] == 1
    for key in ("clean_acc", "pgd_L2_acc", "autoattack_L2_acc", "class_agreement"):
        assert two[key] == pytest.approx(one[key], abs=1 / 60 + 1e-9), key
    assert two["fd"] == pytest.approx(one["fd"], rel=1e-3)
    assert (tmp_path / "two" / "samples.npz").is_file()


def test_resume_with_another_number_of_processes_is_refused(ddp_run):
    with pytest.raises(DualatError, match="written by 2 process"):
        train(None, [], resume=ddp_run, show_progress=False)


def test_global_batch_must_divide_over_the_processes(monkeypatch, tmp_path):
    """Checked from torchrun's environment before any process group, file or model exists."""
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(DualatError, match=r"stage1\.batch_size=64 .* 3 processes"):
        train("digits", TINY_DIGITS, out=tmp_path / "r", show_progress=False)
    with pytest.raises(DualatError, match=r"stage2\.batch_size=32 .* 3 processes"):
        train("digits", TINY_DIGITS + ["stage1.batch_size=63", "stage2.batch_size=32"], out=tmp_path / "r",
              show_progress=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DualatError, match="distributed.sync_bn=true needs CUDA"):
        train("digits", TINY_DIGITS + ["device=cpu", "distributed.sync_bn=true"], out=tmp_path / "r",
              show_progress=False)
    assert not (tmp_path / "r").exists()


def test_one_process_verbs_refuse_torchrun(monkeypatch, capsys):
    from dualat.cli import main
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["explain", "runs/none", "--images", "0"]) == 2
    assert "launch it without torchrun" in capsys.readouterr().err
