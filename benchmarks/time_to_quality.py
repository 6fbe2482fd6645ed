"""`python -m benchmarks.time_to_quality RUN_DIR ...`: how long a run took to become good.

Reads each run's metrics.jsonl: its periodic evaluations (stage 2, EMA model: `fd` in the
evaluation network's features and `robust_acc`, PGD-`eval.pgd_steps` on the run's own norm)
and the wall clock / process CPU time the log records, and reports the wall and CPU time at
which the run FIRST reached FD <= --fd and robust accuracy >= --robust (each, and both at
once), counted from the run's start event, so stage 1, the evaluation network and every
periodic evaluation are included. A resumed run's sessions are added up (the time between a
kill and its resume is not counted; nor is the time after a session's last record).
Also: the periodic evaluation's share of the wall time (logs written since dualat records
`eval_wall_s`), so one can see whether evaluating distorts the figures.

The defaults (issue 29): FD <= 1.0 and robust accuracy >= the run's own stage 1 minus 1.5
points (its `stage1_eval` record; `--robust` sets an absolute threshold instead). The periodic
evaluation attacks with eval.pgd_steps (10 in the preset), not the PGD-20 of `dualat eval`; the
table names the attack. A run whose stage 1 came from another run (stage1.init=OTHER/stage1.pt
with stage1.iterations=0) is charged that run's whole time too, when OTHER's log is there: the
"stage 1 from" column names it, and every time includes it.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import yaml

DEFAULT_FD, DEFAULT_DROP = 1.0, 0.015


def read_records(run_dir) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"time_to_quality: {run_dir} has no metrics.jsonl; give a directory `dualat train` wrote")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def timeline(records: list[dict]) -> list[tuple[dict, float, float | None]]:
    """(record, wall seconds since the run started, CPU seconds or None) for every record,
    sessions (start / resume events) added up."""
    out = []
    wall_base, cpu_base = 0.0, 0.0
    t0 = c0 = None
    last_wall, last_cpu = 0.0, 0.0
    for r in records:
        if r.get("event") in ("start", "resume"):
            wall_base, cpu_base = last_wall, last_cpu
            t0, c0 = r["time"], r.get("cpu_s")
        if t0 is None:  # records before any start event (not written by dualat train)
            continue
        wall = wall_base + r["time"] - t0
        cpu = cpu_base + r["cpu_s"] - c0 if c0 is not None and "cpu_s" in r else None
        last_wall = wall
        if cpu is not None:
            last_cpu = cpu
        out.append((r, wall, cpu))
    return out


def _hit(row, offset=(0.0, 0.0)) -> dict:
    r, wall, cpu = row
    return {"iteration": r["iteration"], "wall_s": round(wall + offset[0], 1),
            "cpu_s": None if cpu is None else round(cpu + offset[1], 1),
            "fd": r.get("fd"), "robust_acc": r.get("robust_acc")}


def stage1_source(run_dir) -> tuple[str | None, float, float]:
    """(the run that made this run's stage 1, its wall s, its CPU s): for a run started from
    stage1.init with stage1.iterations=0 whose init sits in a run directory with a log; else (None, 0, 0)."""
    cfg_path = Path(run_dir) / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text()) if cfg_path.is_file() else {}
    s1 = (cfg or {}).get("stage1") or {}
    init = s1.get("init")
    if not init or s1.get("iterations", 1) != 0 or not (Path(init).parent / "metrics.jsonl").is_file():
        return None, 0.0, 0.0
    rows = timeline(read_records(Path(init).parent))
    return str(Path(init).parent), rows[-1][1] if rows else 0.0, (rows[-1][2] or 0.0) if rows else 0.0


def time_to_quality(run_dir, fd_max: float = DEFAULT_FD, robust_min: float | None = None,
                    robust_drop: float = DEFAULT_DROP) -> dict:
    """First reach of each threshold in one run (None where never reached), and the eval share.
    robust_min None: the run's own stage-1 robust accuracy minus `robust_drop`."""
    records = read_records(run_dir)
    rows = timeline(records)
    evals = [row for row in rows if row[0].get("event") == "eval"]
    stage1 = next((r for r in records if r.get("event") == "stage1_eval"), None)
    if robust_min is None:
        robust_min = stage1["robust_acc"] - robust_drop if stage1 else None
    source, wall1, cpu1 = stage1_source(run_dir)
    fd_ok = lambda r: isinstance(r.get("fd"), (int, float)) and r["fd"] <= fd_max  # noqa: E731
    acc_ok = lambda r: (robust_min is not None and isinstance(r.get("robust_acc"), (int, float))  # noqa: E731
                        and r["robust_acc"] >= robust_min)
    first = lambda ok: next((_hit(row, (wall1, cpu1)) for row in evals if ok(row[0])), None)  # noqa: E731
    start = next((r for r in records if r.get("event") in ("start", "resume")), {})
    total_wall = (rows[-1][1] if rows else 0.0) + wall1
    total_cpu = rows[-1][2] + cpu1 if rows and rows[-1][2] is not None else None
    costs = [row[0].get("eval_wall_s") for row in evals]
    share = (sum(costs) / total_wall if total_wall > 0 else None) if costs and None not in costs else None
    return {
        "run": str(run_dir), "precision": start.get("precision") or "not logged",
        "thresholds": {"fd_max": fd_max, "robust_min": robust_min,
                       "robust_rule": "absolute" if stage1 is None or robust_min != stage1["robust_acc"] - robust_drop
                       else f"stage 1 ({stage1['robust_acc']:.4f}) - {robust_drop:g}"},
        "stage1_from": source, "stage1_wall_s": round(wall1, 1),
        "attack": evals[-1][0].get("attack") if evals else None, "evaluations": len(evals),
        "fd": first(fd_ok), "robust": first(acc_ok), "both": first(lambda r: fd_ok(r) and acc_ok(r)),
        "total_wall_s": round(total_wall, 1), "total_cpu_s": None if total_cpu is None else round(total_cpu, 1),
        "finished": any(r.get("event") == "done" for r in records),
        "eval_wall_s": round(sum(costs), 1) if costs and None not in costs else None, "eval_share": share,
        "final": _hit(evals[-1], (wall1, cpu1)) if evals else None,
    }


def _when(hit) -> str:
    if hit is None:
        return "not reached"
    cpu = f", {hit['cpu_s']:.0f} CPU s" if hit["cpu_s"] is not None else ""
    return f"it {hit['iteration']}: {hit['wall_s']:.0f} s{cpu}"


def markdown(results: list[dict]) -> str:
    fd_max = results[0]["thresholds"]["fd_max"] if results else DEFAULT_FD
    lines = [f"| run | precision | stage 1 from | FD <= {fd_max:g} | robust acc >= | reached | both | whole run | "
             "periodic eval share of wall time | attack |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        cpu = f", {r['total_cpu_s']:.0f} CPU s" if r["total_cpu_s"] is not None else ""
        share = f"{100 * r['eval_share']:.1f}%" if r["eval_share"] is not None else "not logged"
        whole = f"{r['total_wall_s']:.0f} s{cpu}" + ("" if r["finished"] else " (unfinished)")
        t = r["thresholds"]
        bar = "no stage-1 record" if t["robust_min"] is None else f"{t['robust_min']:.4f} ({t['robust_rule']})"
        origin = f"{r['stage1_from']} ({r['stage1_wall_s']:.0f} s)" if r["stage1_from"] else "this run"
        lines.append(f"| {r['run']} | {r['precision']} | {origin} | {_when(r['fd'])} | {bar} | {_when(r['robust'])} "
                     f"| {_when(r['both'])} | {whole} | {share} | {r['attack']} |")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.time_to_quality", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run directories written by `dualat train`")
    p.add_argument("--fd", type=float, default=DEFAULT_FD, help=f"FD threshold (default {DEFAULT_FD})")
    p.add_argument("--robust", type=float, default=None,
                   help="absolute robust accuracy threshold, a fraction (default: the run's stage 1 minus --robust-drop)")
    p.add_argument("--robust-drop", type=float, default=DEFAULT_DROP,
                   help=f"how far below its own stage 1 a run may be (default {DEFAULT_DROP}, 1.5 points)")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--md", default=None, help="write the markdown table here")
    return p


def collect(runs: str, options: str = "") -> dict | None:
    """For `make bench TTQ_RUNS=... TTQ_ARGS=...` (benchmarks.run): the command and its results."""
    if not runs.strip():
        return None
    argv = runs.split() + shlex.split(options)
    a = parser().parse_args(argv)
    return {"command": "python -m benchmarks.time_to_quality " + " ".join(argv),
            "results": [time_to_quality(r, a.fd, a.robust, a.robust_drop) for r in a.runs]}


def main(argv=None) -> list[dict]:
    a = parser().parse_args(argv)
    results = [time_to_quality(r, a.fd, a.robust, a.robust_drop) for r in a.runs]
    table = markdown(results)
    print(table, end="")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    if a.md:
        Path(a.md).write_text(table)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
