"""What `make bench` reads from finished training runs (it trains nothing): the K table, one row
per run of stage 2 with K attack steps, and each run's training command.

Per run directory:
  - config.yaml: K = stage 2's adversarial steps (threat.steps, or 1 with threat.fast:
    dualat.training.steps.attack_steps);
  - metrics.jsonl: the training command (the start event's overrides on the config's name),
    the precision it trained in, stage 2's wall and CPU time and its periodic evaluations' share,
    and the mean T of the logged windows (input-gradient passes per iteration = mean T + K);
  - every metrics.json that `dualat eval` wrote into the run directory or a folder directly inside
    it (the default RUN/eval-ema, or --out RUN/eval-robust ...), of the EMA weights only, and only
    when they are the run's current model_ema.safetensors: clean accuracy, PGD L2, AutoAttack L2,
    FD / precision / recall, each with the images it used and its compute_dtype.
Where several files hold a number, the one measured on the most images wins (then the newest).
A number no file holds is None ("not run" on the page), never estimated.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from dualat.checkpoint import file_hash
from dualat.config import load_config
from dualat.training.steps import attack_steps

from .time_to_quality import collect as ttq_collect
from .time_to_quality import read_records, stage1_source, timeline

CHECKPOINT = "ema"  # the weights `dualat eval` measures by default: the run's final model


def parse_spec(text: str) -> list[tuple[str, Path]]:
    """'5=runs/g06 3=runs/k3 runs/k1' -> [(label, path)]; a bare path's label is its name."""
    out = []
    for item in text.split():
        label, _, path = item.rpartition("=")
        path = Path(path)
        if not (path / "metrics.jsonl").is_file() or not (path / "config.yaml").is_file():
            raise SystemExit(f"benchmarks: {item!r}: {path} is not a finished `dualat train` run directory "
                             "(no metrics.jsonl / config.yaml); write K_RUNS=\"5=runs/a 3=runs/b 1=runs/c\"")
        out.append((label or path.name, path))
    return out


def train_command(run_dir: Path, records: list[dict], name: str) -> str:
    """`dualat train` as the start (and resume) events recorded it."""
    parts = []
    for r in records:
        ov = " ".join(r.get("overrides") or [])
        if r.get("event") == "start":
            parts.append(f"dualat train {name} {ov} --out {run_dir}".replace("  ", " "))
        elif r.get("event") == "resume":
            parts.append(f"dualat train --resume {run_dir} {ov}".rstrip())
    return "; then ".join(parts) or "not logged"


def logged_command(run_dir: Path) -> str:
    """The training command of a run directory, from its log and config."""
    name = load_config(run_dir / "config.yaml").name if (run_dir / "config.yaml").is_file() else "PRESET"
    return train_command(run_dir, read_records(run_dir), name)


def stage2_time(records: list[dict]) -> dict | None:
    """Stage 2's wall and CPU seconds: from the stage-1 evaluation record to the run's last record
    (sessions added up). The log has no CPU reading at that record, so the CPU time counts from the
    last reading before it (the start event: it includes the stage-1 evaluation)."""
    rows = timeline(records)
    at = max((i for i, (r, _, _) in enumerate(rows) if r.get("event") == "stage1_eval"), default=None)
    if at is None or at == len(rows) - 1:
        return None
    cpu0 = next((c for _, _, c in reversed(rows[: at + 1]) if c is not None), None)
    cpu_last = next((c for _, _, c in reversed(rows) if c is not None), None)
    evals = [r.get("eval_wall_s") for r, _, _ in rows[at:] if r.get("event") == "eval" and r.get("stage") == 2]
    wall = rows[-1][1] - rows[at][1]
    return {"wall_s": round(wall, 1), "cpu_s": None if cpu0 is None or cpu_last is None else round(cpu_last - cpu0, 1),
            "eval_wall_s": round(sum(evals), 1) if evals and None not in evals else None,
            "stage1_eval_wall_s": round(rows[at][1], 1),
            "iterations": max((r.get("iteration") or 0 for r, _, _ in rows[at:] if r.get("stage") == 2), default=0)}


def passes(records: list[dict], K: int) -> dict | None:
    """Passes of one stage-2 iteration: mean T (of the logged windows) + K input-gradient passes,
    and 3 training passes (real, contrastive, adversarial)."""
    Ts = [r["T"] for r in records if r.get("stage") == 2 and "event" not in r and isinstance(r.get("T"), (int, float))]
    if not Ts:
        return None
    mean_T = sum(Ts) / len(Ts)
    return {"mean_T": round(mean_T, 2), "K": K, "input_grad": round(mean_T + K, 2), "train": 3, "windows": len(Ts)}


def _first(pattern: str, text: str) -> int | None:
    m = re.search(pattern, text or "")
    return int(m.group(1)) if m else None


def _numbers(m: dict, file: str) -> dict:
    """The K table's numbers that one metrics.json holds, each with its images, dtype and source."""
    dtypes, out = m.get("compute_dtype") or {}, {}
    base = {"file": file, "time": m.get("time", "")}
    if "clean_acc" in m:
        out["clean"] = {**base, "value": m["clean_acc"], "n": _first(r"first (\d+)", m.get("clean_protocol")),
                        "dtype": dtypes.get("clean_acc", "not recorded")}
    if "pgd_L2_acc" in m:
        proto = m.get("robust_protocol", "")
        out["pgd_l2"] = {**base, "value": m["pgd_L2_acc"], "n": _first(r"first (\d+) test images", proto),
                         "steps": _first(r"PGD-(\d+)", proto), "restarts": _first(r"(\d+) restart", proto),
                         "eps": m.get("eps_L2"), "dtype": dtypes.get("pgd_L2_acc", "not recorded")}
    if "autoattack_L2_acc" in m:
        part = next((p for p in (m.get("autoattack_protocol") or "").split(" | ") if " L2 eps" in p), "")
        version = re.search(r"AutoAttack \((\w+)", part)
        out["aa_l2"] = {**base, "value": m["autoattack_L2_acc"], "n": _first(r"first (\d+) test images", part),
                        "version": version.group(1) if version else "not recorded",
                        "standard": "NON-standard" not in part, "eps": m.get("eps_L2"),
                        "dtype": dtypes.get("autoattack_L2_acc", "not recorded")}
    if "fd" in m:
        out["generative"] = {**base, "fd": m["fd"], "precision": m.get("precision"), "recall": m.get("recall"),
                             "n": m.get("n_samples"), "n_ref": m.get("n_ref"), "ref": m.get("ref"),
                             "extractor": m.get("extractor"), "steps": m.get("sample_steps"),
                             "dtype": dtypes.get("samples", "not recorded")}
    return out


def evaluations(run_dir: Path) -> tuple[dict, list[str]]:
    """({number: its best record}, [files skipped, with why])."""
    best, skipped = {}, []
    ema = run_dir / "model_ema.safetensors"
    current = file_hash(ema) if ema.is_file() else None
    for path in sorted([run_dir / "metrics.json", *run_dir.glob("*/metrics.json")]):
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        ck = m.get("checkpoint") or {}
        file = str(path)
        if ck.get("checkpoint") != CHECKPOINT:
            skipped.append(f"{file} ({ck.get('checkpoint', 'unknown')} weights, not {CHECKPOINT})")
            continue
        if current is not None and ck.get("sha256") not in (None, current):
            skipped.append(f"{file} (weights {ck.get('sha256')}, not the run's current {current})")
            continue
        for key, rec in _numbers(m, file).items():
            old = best.get(key)
            if old is None or _rank(rec) > _rank(old):
                best[key] = rec
    return best, skipped


def _rank(rec: dict) -> tuple:
    """Which of two records of one number the K table shows: more images, then the standard AutoAttack
    over a custom one (whichever ran later), then the later one."""
    standard = rec.get("version", "standard") == "standard" and rec.get("standard", True)
    return (rec["n"] or 0), standard, rec["time"]


def k_row(label: str, run_dir: Path) -> dict:
    records = read_records(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    K = attack_steps(cfg.threat)[0]
    start = next((r for r in records if r.get("event") in ("start", "resume")), {})
    numbers, skipped = evaluations(run_dir)
    source = stage1_source(run_dir)[0]
    return {"label": label, "run": str(run_dir), "K": K, "fast": bool(cfg.threat.fast),
            "attack": f"{cfg.threat.norm} eps={cfg.threat.eps:g}, step {attack_steps(cfg.threat)[1]:g}",
            "train_command": train_command(run_dir, records, cfg.name),
            "trained_in": start.get("precision") or "not logged", "stage1_from": source,
            "stage1_command": logged_command(Path(source)) if source else None,
            "finished": any(r.get("event") == "done" for r in records),
            "stage2": stage2_time(records), "passes": passes(records, K), "numbers": numbers, "skipped": skipped}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


SAME_ANYWAY = ("threat.", "threads", "device", "name")  # K itself, and what does not change the result


def config_differences(runs: list[tuple[str, Path]]) -> list[str]:
    """The settings (config.yaml, flattened) in which the runs differ besides threat.* (K) and threads:
    'key (label: value, ...)'."""
    flats = [(label, _flat(yaml.safe_load((path / "config.yaml").read_text()) or {})) for label, path in runs]
    keys = sorted(set().union(*(f for _, f in flats))) if flats else []
    return [f"{key} (" + ", ".join(f"{label}: {f.get(key, 'unset')}" for label, f in flats) + ")"
            for key in keys if not key.startswith(SAME_ANYWAY) and len({repr(f.get(key)) for _, f in flats}) > 1]


def k_table(spec: str) -> dict | None:
    """The K table's inputs for K_RUNS (None when empty)."""
    if not spec.strip():
        return None
    runs = parse_spec(spec)
    return {"spec": spec.strip(), "rows": [k_row(label, path) for label, path in runs],
            "differences": config_differences(runs)}


def time_to_quality(runs: str, options: str = "") -> dict | None:
    """The time-to-quality table's inputs for TTQ_RUNS / TTQ_ARGS (None when empty), each run with its
    training command."""
    t = ttq_collect(runs, options)
    for r in t["results"] if t else []:
        r["train_command"] = logged_command(Path(r["run"]))
    return t
