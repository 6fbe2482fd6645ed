"""`python -m benchmarks.preset_check`: a few hundred iterations of a preset on the synthetic `fake`
data set (deterministic random images of the preset's shape; no download), then the stage-1 and
stage-2 images/s and the peak memory. scripts/gpu_check.sh runs it after the harness.

Images/s of a stage are measured between its first and its last log record, so the first
log.every iterations (torch.compile, cuDNN autotuning, oneDNN kernel builds) are left out.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.preset_check", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="cifar10_wrn34")
    p.add_argument("--device", default="cuda", help="cuda[:N] or cpu")
    p.add_argument("--stage1", type=int, default=100, help="stage-1 iterations (default 100)")
    p.add_argument("--stage2", type=int, default=200, help="stage-2 iterations (default 200)")
    p.add_argument("--t-init", type=int, default=10, help="stage-2 T throughout (t_init = t_max; default 10)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: on for cuda)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile (default: on for cuda)")
    p.add_argument("--quick", action="store_true", help="a smoke run of the plumbing: 2 + 2 iterations at batch 2, "
                   "T = K = 1, with a WRN-10-1 (the preset's model family, 1/400 of its cost) for WRN-34-10")
    p.add_argument("--out", default=None, help="run directory (default: a new temporary folder)")
    p.add_argument("--json", default=None, help="also write the result here")
    a = p.parse_args(argv)
    cuda = a.device.startswith("cuda")
    a.amp = cuda if a.amp is None else a.amp
    a.compile = cuda if a.compile is None else a.compile
    if a.quick:
        a.stage1, a.stage2, a.t_init, a.batch_size = 2, 2, 1, a.batch_size or 2
    return a


def overrides(a) -> list[str]:
    from dualat.config import load_config
    o = ["data.name=fake", "data.image_size=32", "data.num_classes=10", "data.seeds=noise", f"device={a.device}",
         f"amp={str(a.amp).lower()}", f"model.compile={str(a.compile).lower()}",
         f"stage1.iterations={a.stage1}", f"stage2.iterations={a.stage2}",
         f"stage2.t_init={a.t_init}", f"stage2.t_max={a.t_init}",
         # one evaluation, at the end, kept small: this measures training steps
         "eval.n_test=64", "eval.n_samples=64", "eval.pgd_steps=2", "eval.evalnet_iterations=20", "eval.sample_steps=1",
         f"log.every={1 if a.quick else 10}", "log.checkpoint_every=100000"]
    if a.batch_size:
        o += [f"stage1.batch_size={a.batch_size}", f"stage2.batch_size={a.batch_size}"]
    if a.quick:
        o += ["stage1.attack.steps=1", "threat.steps=1", "stage2.optim.lr=1.0e-3"]
        if load_config(a.preset).model.name.startswith("wrn"):
            o += ["model.name=wide_resnet", "model.kwargs={depth: 10, widen: 1}"]
    return o


def stage_rate(records: list[dict], stage: int, batch: int) -> dict | None:
    """Images/s between a stage's first and last log record (None with fewer than two)."""
    rows = [r for r in records if r.get("stage") == stage and "event" not in r]
    if len(rows) < 2 or rows[-1]["time"] <= rows[0]["time"]:
        return None
    its = rows[-1]["iteration"] - rows[0]["iteration"]
    secs = rows[-1]["time"] - rows[0]["time"]
    out = {"iterations_timed": its, "seconds": round(secs, 3), "s_per_iteration": secs / its,
           "images_per_s": its * batch / secs}
    if stage == 2:
        out["mean_T"] = sum(r.get("T", 0) for r in rows[1:]) / len(rows[1:])
    return out


def peak_memory(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"what": "torch.cuda.max_memory_allocated", "bytes": torch.cuda.max_memory_allocated(device),
                "reserved_bytes": torch.cuda.max_memory_reserved(device)}
    return {"what": "peak RSS of this process (ru_maxrss)", "bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def main(argv=None) -> dict:
    from dualat.config import load_config
    from dualat.training import train
    from dualat.ui import read_log
    a = parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("preset_check: --device cuda asked for, but this torch sees no CUDA GPU")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="dualat-preset-check-")) / "run"
    cfg = load_config(a.preset, overrides(a))
    t0 = time.time()
    train(cfg, out=out, show_progress=False)
    wall = time.time() - t0
    records = read_log(out)
    start = next(r for r in records if r.get("event") == "start")
    result = {"preset": a.preset, "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "precision": start.get("precision"), "compile": a.compile, "model": cfg.model.name,
              "stage1_batch": cfg.stage1.batch_size, "stage2_batch": cfg.stage2.batch_size,
              "stage1_attack_steps": cfg.stage1.attack.steps, "threat_attack_steps": cfg.threat.steps,
              "stage1": stage_rate(records, 1, cfg.stage1.batch_size), "stage2": stage_rate(records, 2, cfg.stage2.batch_size),
              "peak_memory": peak_memory(device), "wall_s": round(wall, 1), "run_dir": str(out),
              "overrides": overrides(a)}
    for s in (1, 2):
        r = result[f"stage{s}"]
        print(f"[{a.preset}] stage {s}: " + (f"{r['images_per_s']:.1f} images/s ({r['s_per_iteration']:.3f} s/iteration "
              f"over {r['iterations_timed']} iterations" + (f", T = {r['mean_T']:.0f}" if s == 2 else "") + ")"
              if r else "too few iterations to time"), flush=True)
    pm = result["peak_memory"]
    print(f"[{a.preset}] peak memory {pm['bytes'] / 2**20:.0f} MiB ({pm['what']}); precision {result['precision']}, "
          f"compile {a.compile}; {wall:.0f} s in all", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
