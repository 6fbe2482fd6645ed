"""One-knob-at-a-time generation experiments, with the standard evaluation protocol.

    python scripts/knob_sweep.py run   --plan digits --out runs/knobs-digits   # trains + evaluates (resumable)
    python scripts/knob_sweep.py table --plan digits --out runs/knobs-digits   # markdown table (docs/generation.md)

Each experiment is the preset plus a few `key=value` overrides. Experiments marked "stage 2 only" start
stage 2 from the reference run's stage-1 checkpoint (`stage1.init=... stage1.iterations=0`), so that only
the stage-2 knob differs. Every run is evaluated by the same `dualat eval` commands:

    dualat eval RUN --generative --ref-split test --n-ref 100000 --n-samples 2000        (sampler: the run's final T, 2x step)
    dualat eval RUN --robust --norm L2 --pgd-steps 20                                    (EMA, all test images)
    dualat eval RUN --checkpoint stage1 --robust --norm L2 --pgd-steps 20                (its own stage 1)

Rerunning `run` skips what is finished; a killed training continues with `--resume`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# name -> (overrides, stage-2 only?, what the knob is)
PLANS = {
    "digits": {
        "preset": "digits",
        "runs": [
            ("ref", [], False, "the digits preset (seed 0)"),
            ("ref_seed1", ["seed=1"], False, "seed noise"),
            ("ref_seed2", ["seed=2"], False, "seed noise"),
            ("s1_x4", ["stage1.iterations=1200"], False, "stage 1 length 300 -> 1200"),
            ("s2_x4", ["stage2.iterations=600"], True, "stage 2 length 150 -> 600"),
            ("tmax40_s2x2", ["stage2.iterations=300", "stage2.t_max=40"], True, "T_max 20 -> 40 (at stage 2 x2)"),
            ("auc099", ["stage2.auc_threshold=0.99"], True, "AUC threshold 0.8 -> 0.99"),
            ("s2_x2", ["stage2.iterations=300"], True, "stage 2 length 150 -> 300"),
            ("tmax40_auc09_s2x2", ["stage2.iterations=300", "stage2.t_max=40", "stage2.auc_threshold=0.9"], True,
             "AUC threshold 0.8 -> 0.9 at T_max 40 (binds: the AUC falls below 0.9 once T > 30)"),
            ("step02", ["stage2.step_size=0.2"], True, "contrastive step 0.1 -> 0.2"),
            ("seeds_jitter", ["data.seeds=patches_jitter"], True, "seeds: multi-scale jittered patches"),
            ("seeds_mix", ["data.seeds=mix:0.3"], True, "seeds: 30% per-class Gaussian + 70% patches"),
            ("width2", ["model.kwargs.width=2.0"], False, "small_cnn width x2 (both stages)"),
            ("seeds_noise", ["data.seeds=noise"], True, "seeds: uniform noise instead of photo patches"),
            ("tmax30_s2x2", ["stage2.iterations=300", "stage2.t_max=30"], True, "T_max 20 -> 30 (at stage 2 x2)"),
            ("step005", ["stage2.step_size=0.05"], True, "contrastive step 0.1 -> 0.05"),
        ],
    },
}


def _dualat(args: list[str], log: Path) -> None:
    cmd = [sys.executable, "-m", "dualat", *args]
    with log.open("a") as fh:
        fh.write("$ dualat " + " ".join(args) + "\n")
        fh.flush()
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if rc != 0:
        raise SystemExit(f"error: `dualat {' '.join(args)}` exited {rc}; see {log}")


EVALS = {
    "gen": ["--generative", "--ref-split", "test", "--n-ref", "100000", "--n-samples", "2000"],
    "rob": ["--robust", "--norm", "L2", "--pgd-steps", "20"],
    "rob_stage1": ["--checkpoint", "stage1", "--robust", "--norm", "L2", "--pgd-steps", "20"],
}


def run(plan: dict, out: Path, only: list[str] | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ref_stage1 = (out / "ref" / "stage1.pt").resolve()
    for name, overrides, stage2_only, _ in plan["runs"]:
        if only and name not in only:
            continue
        d = out / name
        log = out / f"{name}.log"
        if not (d / "summary.json").is_file():
            t0 = time.time()
            extra = [f"stage1.init={ref_stage1}", "stage1.iterations=0"] if stage2_only else []
            if (d / "last.pt").is_file():
                _dualat(["train", "--resume", str(d), "threads=1"], log)
            else:
                _dualat(["train", plan["preset"], "--out", str(d), "threads=1", *overrides, *extra], log)
            (d / "sweep_wall.json").write_text(json.dumps({"wall_s": time.time() - t0}))
        for key, args in EVALS.items():
            if not (d / f"eval-{key}" / "metrics.json").is_file():
                _dualat(["eval", str(d), *args, "--out", str(d / f"eval-{key}"), "--quiet"], log)
        print(f"{name}: done", flush=True)


def _get(tree, *path, default=float("nan")):
    for p in path:
        if not isinstance(tree, dict) or p not in tree:
            return default
        tree = tree[p]
    return tree


def table(plan: dict, out: Path) -> str:
    rows = ["| run | knob | clean % | PGD-20 L2 % (its stage 1) | FD | precision | recall | final T | train wall min |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, overrides, stage2_only, what in plan["runs"]:
        d = out / name
        try:
            gen = json.loads((d / "eval-gen" / "metrics.json").read_text())
            rob = json.loads((d / "eval-rob" / "metrics.json").read_text())
            rob1 = json.loads((d / "eval-rob_stage1" / "metrics.json").read_text())
            summ = json.loads((d / "summary.json").read_text())
        except (OSError, ValueError):
            rows.append(f"| {name} | {what} | not run | | | | | | |")
            continue
        wall = _get(json.loads((d / "sweep_wall.json").read_text()) if (d / "sweep_wall.json").is_file() else {}, "wall_s")
        rows.append("| {} | {}{} | {:.1f} | {:.1f} ({:.1f}) | {:.2f} | {:.3f} | {:.3f} | {} | {:.1f} |".format(
            name, what, " (stage 2 only)" if stage2_only else "", 100 * _get(rob, "clean_acc"),
            100 * _get(rob, "pgd_L2_acc"), 100 * _get(rob1, "pgd_L2_acc"), _get(gen, "fd"), _get(gen, "precision"),
            _get(gen, "recall"), _get(summ, "stage2", "T_final", default="?"), wall / 60))
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("verb", choices=["run", "table"])
    ap.add_argument("--plan", default="digits", choices=sorted(PLANS))
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--only", nargs="*", help="run only these experiments")
    a = ap.parse_args()
    if a.verb == "run":
        run(PLANS[a.plan], a.out, a.only)
    print(table(PLANS[a.plan], a.out))


if __name__ == "__main__":
    main()
