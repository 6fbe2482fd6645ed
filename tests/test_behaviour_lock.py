"""Behaviour lock: a tiny digits DAT run and a tiny JEM run, a 100-sample set and one evaluation,
compared bit-for-bit with tests/data/behaviour_lock.json (recorded before the issue-17 redesign).

A refactor must not move any of these numbers. A deliberate change of behaviour re-records the
reference in a commit of its own that says why:

    DUALAT_RECORD_LOCK=1 PYTHONPATH=src python -m pytest -q tests/test_behaviour_lock.py

Float results depend on the CPU's vector kernels, so the reference names the CPU capability it
was recorded on (torch.backends.cpu.get_cpu_capability()); elsewhere the test is skipped.
"""
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from dualat.checkpoint import safe_load
from dualat.evaluate.run import evaluate
from dualat.sample import sample
from dualat.training import train

REFERENCE = Path(__file__).parent / "data" / "behaviour_lock.json"
RECORD = os.environ.get("DUALAT_RECORD_LOCK") == "1"

DAT = ["amp=false", "eval.step_sweep=false", "threads=1", "stage1.iterations=30", "stage2.iterations=20", "stage2.t_init=2", "stage2.auc_window=2",
       "eval.every=10", "eval.n_test=60", "eval.n_samples=40", "eval.pgd_steps=3", "eval.evalnet_iterations=40",
       "log.every=5", "log.checkpoint_every=10"]
JEM = ["amp=false", "threads=1", "method=jem", "jem.iterations=12", "jem.batch_size=16", "jem.buffer_size=64",
       "jem.sgld_steps=4", "jem.optim.warmup=3", "eval.every=6", "eval.n_test=40", "eval.n_samples=32",
       "eval.pgd_steps=2", "eval.evalnet_iterations=40", "log.every=3", "log.checkpoint_every=6"]


def digest(state: dict) -> str:
    """sha256 over the tensors of a state dict, in sorted key order (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key]
        if not torch.is_tensor(t):
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def tensor_digest(*tensors) -> str:
    return digest({str(i): t for i, t in enumerate(tensors)})


def _numbers(record: dict, keys) -> dict:
    return {k: record[k] for k in keys if k in record}


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("lock")
    try:
        dat_dir = train("digits", DAT, out=root / "dat", show_progress=False)
        jem_dir = train("digits", JEM, out=root / "jem", show_progress=False)
        x, y = sample(dat_dir, n=100, seed=3)
        ev = evaluate(dat_dir, n=60, ood=False, pgd_steps=3, n_samples=40, n_ref=40, is_splits=4,
                      show_progress=False, device="cpu")
    finally:
        torch.set_num_threads(threads)
    last = safe_load(dat_dir / "last.pt")
    summary = json.loads((dat_dir / "summary.json").read_text())
    jem_summary = json.loads((jem_dir / "summary.json").read_text())
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "dat_last_model": digest(last["model"]),
        "dat_last_ema": digest(last["ema"]["model"]),
        "dat_model_ema_file": digest(safe_load(dat_dir / "model_ema.safetensors")),
        "dat_stage1": digest(safe_load(dat_dir / "stage1.pt")["model"]),
        "dat_best_fid": digest(safe_load(dat_dir / "best_fid.pt")["model"]),
        "dat_summary": {"stage1": _numbers(summary["stage1"], ("clean_acc", "robust_acc", "attack")),
                        "stage2": _numbers(summary["stage2"], ("clean_acc", "robust_acc", "fd", "class_agreement",
                                                               "T_final", "best_fd", "best_robust_acc", "attack"))},
        "jem_model": digest(safe_load(jem_dir / "model.safetensors")),
        "jem_buffer": tensor_digest(safe_load(jem_dir / "replay_buffer.safetensors")["images"]),
        "jem_summary": _numbers(jem_summary["jem"], ("clean_acc", "robust_acc", "fd", "fd_fresh", "iterations_done",
                                                     "buffer_restart_rate", "attack")),
        "samples_100": tensor_digest(x, y),
        "evaluation": _numbers(ev, ("clean_acc", "pgd_L2_acc", "pgd_Linf_acc", "robust_acc", "eps_L2", "eps_Linf",
                                    "fd", "fd_seeds", "fd_floor_train_vs_test", "class_agreement", "ece", "nll",
                                    "sample_steps", "sample_step_size")),
    }


def test_behaviour_matches_the_recorded_reference(observed):
    if RECORD:
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE.write_text(json.dumps(observed, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"recorded {REFERENCE}")
    ref = json.loads(REFERENCE.read_text())
    if ref["cpu_capability"] != observed["cpu_capability"]:
        pytest.skip(f"reference recorded on a {ref['cpu_capability']} CPU, this one is "
                    f"{observed['cpu_capability']}: float kernels differ")
    for key in sorted(ref):
        assert observed[key] == ref[key], f"{key} changed: {observed[key]!r} != reference {ref[key]!r}"
    assert set(observed) == set(ref)
