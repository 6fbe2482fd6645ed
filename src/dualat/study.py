"""`dualat study CONFIG`: the paper's central comparison, reproducible with one command.

For each seed: a plain (non-robust) classifier, DAT (whose stage-1 checkpoint is the "standard
adversarial training" row, evaluated as a generator with the same PGD sampler) and JEM at the
budget of its config; every model evaluated by the same `evaluate()`; then a results table
(mean ± std over seeds), ablations of DAT (seed 0, from the seed-0 stage-1 weights) and a
self-contained HTML report. Resumable: finished runs and evaluations are kept, an unfinished run
continues from its last checkpoint, so the study can span several sessions. Parallel: start the
same command several times (one per GPU, or per core with threads=1); the processes claim runs and
evaluations (OUT/.claims/) and each waits for the others before writing the table.

Layout of OUT: seed<k>/{plain,dat,jem}/ (run directories with their eval-study-* folders),
ablations/<name>/, results.json, results.md, report.html (+ report_files/).
"""
from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from .config import load_config, to_dict
from .errors import DualatError
from .evaluate.run import evaluate
from .train import train
from .train.log import code_versions, read_log
from .worklock import claim

# (row name, run folder, checkpoint, sampler)
ROWS = [("plain classifier", "plain", "stage1", "pgd"),
        ("adversarial training (stage 1)", "dat", "stage1", "pgd"),
        ("DAT", "dat", "ema", "pgd"),
        ("JEM (replay buffer)", "jem", "model", "buffer"),
        ("JEM (fresh SGLD chains)", "jem", "model", "sgld")]
ABLATIONS = {
    "auc_threshold_0.6": ["stage2.auc_threshold=0.6"],
    "t_max_20": ["stage2.t_max=20"],
    "batchnorm_active": ["stage2.freeze_bn=false"],
    "noise_seeds": ["data.seeds=noise"],
}
# the fresh-chain JEM row evaluates the replay-buffer row's weights: these columns are that model's
SHARED_BY_JEM_ROWS = ("clean_acc", "autoattack_L2_acc", "pgd_L2_acc")
COLUMNS = [("clean_acc", "clean acc", 100, "{:.2f}"), ("autoattack_L2_acc", "AutoAttack L2", 100, "{:.2f}"),
           ("pgd_L2_acc", "PGD-20 L2", 100, "{:.2f}"), ("fd", "FD (evalnet)", 1, "{:.2f}"),
           ("inception_score", "IS (evalnet)", 1, "{:.2f}"), ("precision", "precision", 1, "{:.3f}"),
           ("recall", "recall", 1, "{:.3f}"), ("sample_steps", "sampling steps", 1, "{:.0f}"),
           ("passes_M", "fwd/bwd passes (M images)", 1, "{:.2f}"), ("wall_min", "wall time (min)", 1, "{:.1f}"),
           ("diverged", "divergences", 1, "{:.0f}")]


def _say(show: bool, text: str) -> None:
    if show:
        print(text, flush=True)


def ensure_run(config, overrides: list[str], out: Path, show_progress: bool) -> dict:
    """Train `out` unless finished (summary.json); resume it when a checkpoint exists. A
    divergence is recorded, not raised. Returns {'dir', 'diverged'}."""
    if (out / "summary.json").is_file():
        pass
    elif (out / "config.yaml").is_file() and (out / "last.pt").is_file() and not (out / "diverged.json").is_file():
        _train_recording(None, [], out, show_progress, resume=True)
    elif not (out / "diverged.json").is_file():
        if (out / "config.yaml").is_file():   # stopped before its first checkpoint: nothing to resume
            aside = out.with_name(f"{out.name}.unstarted-{int(time.time())}")
            out.rename(aside)
            _say(show_progress, f"{out} had no checkpoint yet; its files moved to {aside}, training it afresh")
        _train_recording(config, overrides, out, show_progress)
    return {"dir": out, "diverged": _diverged(out)}


def _share(out: Path, key: str, label: str, busy: list, work, cached: Path | None = None, announce=None):
    """work() unless another `dualat study` on OUT holds the claim `key` (then `label` goes to busy
    and None is returned); a finished piece (`cached` exists) is read without claiming. `announce`:
    a line printed when this process takes the piece on."""
    if cached is not None and cached.is_file():
        return work()
    with claim(out / ".claims" / key) as mine:
        if mine:
            _say(bool(announce), announce or "")
            return work()
    busy.append(label)
    return None


def _done(run_dir: Path) -> bool:
    """A run the study can evaluate: finished, or stopped by a recorded divergence."""
    return (run_dir / "summary.json").is_file() or (run_dir / "diverged.json").is_file()


def _train_recording(config, overrides, out: Path, show_progress: bool, resume: bool = False) -> None:
    try:
        train(config, overrides, out=None if resume else out, resume=out if resume else None,
              show_progress=show_progress)
    except DualatError:
        if not (out / "diverged.json").is_file():  # a user mistake, not a divergence
            raise


def _diverged(run_dir: Path) -> dict | None:
    p = run_dir / "diverged.json"
    return json.loads(p.read_text()) if p.is_file() else None


def passes_and_wall(run_dir: Path, which: str) -> tuple[float, float]:
    """(forward/backward image passes, wall seconds) that produced a row's weights."""
    cfg = load_config(run_dir / "config.yaml")
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    s1 = cfg.stage1
    if cfg.method == "jem":
        j = summary.get("jem") or {}
        return float(j.get("passes", math.nan)), float(j.get("wall_s", math.nan))
    wall1 = float((summary.get("stage1") or {}).get("wall_s", math.nan))
    if cfg.method == "plain":
        return float(s1.iterations * s1.batch_size), wall1
    passes = float(s1.iterations * (s1.attack.steps + 1) * s1.batch_size)
    if which == "stage1":
        return passes, wall1
    s2 = cfg.stage2
    last, total_t = 0, 0.0
    for r in read_log(run_dir):
        if r.get("stage") == 2 and "T" in r and "event" not in r:
            total_t += r["T"] * (r["iteration"] - last)   # the log keeps the mean T of each interval
            last = r["iteration"]
    passes += (total_t + last * (s2.attack.steps + 3)) * s2.batch_size
    return passes, wall1 + float((summary.get("stage2") or {}).get("wall_s", math.nan))


def provenance(run_dir: Path) -> str:
    """The code versions a run's log names (start and resume events), its threads and memory format."""
    events = [r for r in read_log(run_dir) if r.get("event") in ("start", "resume")] \
        if (run_dir / "metrics.jsonl").is_file() else []
    code = [c or "not recorded (logs before dualat recorded its version)" for c in code_versions(events)]
    cfg = load_config(run_dir / "config.yaml")
    return (f"{'; '.join(code) or 'no log'}; {len(events)} start/resume event(s); threads {cfg.threads or 'auto'}; "
            f"{'channels_last' if cfg.model.channels_last else 'contiguous'} memory format")


def evaluate_row(run_dir: Path, checkpoint: str, sampler: str, settings: dict, show_progress: bool,
                 robust: bool = True) -> dict:
    """The study's evaluation of one model (cached in RUN/eval-study-<checkpoint>-<sampler>)."""
    out = run_dir / f"eval-study-{checkpoint}-{sampler}"
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    cfg = load_config(run_dir / "config.yaml")
    steps = settings["sample_steps"] if sampler == "pgd" else (settings["sgld_steps"] if sampler == "sgld" else None)
    if sampler == "pgd" and steps is None:
        steps = cfg.stage2.t_max
    return evaluate(run_dir, checkpoint, robust=robust, generative=True, ood=False, calibrate=robust,
                    norm="L2", n=settings["n_test"], pgd_steps=20, autoattack=robust and settings["n_autoattack"] > 0,
                    n_autoattack=settings["n_autoattack"] or None, n_samples=settings["n_samples"],
                    steps=steps, step_size=settings["sample_step_size"] if sampler == "pgd" else None,
                    ref_split="test", n_ref=settings["n_ref"], sampler=sampler, out=out,
                    show_progress=show_progress)


def _mean_std(values: list[float]) -> tuple[float, float]:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return math.nan, math.nan
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def study(config, seeds: int = 3, out=None, overrides=(), n_autoattack: int = 1000, n_samples: int = 2000,
          n_ref: int = 10000, n_test: int | None = None, sample_steps: int | None = None,
          sample_step_size: float | None = None, sgld_steps: int | None = None, ablations=True,
          show_progress: bool = True) -> Path:
    """Run (or continue) the study; returns OUT. See the module docstring for what it does.

    ablations: True (all of ABLATIONS), False, or a list of ABLATIONS names.
    """
    if seeds < 1:
        raise DualatError(f"--seeds must be at least 1, got {seeds}")
    names = list(ABLATIONS) if ablations is True else list(ablations or [])
    unknown = [a for a in names if a not in ABLATIONS]
    if unknown:
        raise DualatError(f"unknown ablation {unknown[0]!r}; choose from {', '.join(ABLATIONS)}")
    base = load_config(config, list(overrides))  # validates the config and the overrides up front
    out = Path(out) if out else Path("runs") / f"study-{base.name}"
    out.mkdir(parents=True, exist_ok=True)
    step_size = sample_step_size or 2 * base.stage2.step_size
    # the options that differ from the CLI's defaults, so results.md states a command that reproduces it
    options = [f"--{flag} {value}" for flag, value, default in (
        ("n-autoattack", n_autoattack, 1000), ("n-samples", n_samples, 2000), ("n-ref", n_ref, 10000),
        ("n-test", n_test, None), ("steps", sample_steps, None), ("sgld-steps", sgld_steps, None),
        ("ablations", "none" if not names else ",".join(names), ",".join(ABLATIONS))) if value != default]
    if sample_step_size:
        options.append(f"(sample_step_size={sample_step_size:g}, Python API only)")
    settings = {"options": options, "n_autoattack": n_autoattack, "n_samples": n_samples, "n_ref": n_ref, "n_test": n_test,
                "sample_steps": sample_steps or base.stage2.t_max, "sample_step_size": step_size,
                "sgld_steps": sgld_steps or base.stage2.t_max}
    t0 = time.time()
    while True:
        busy: list[str] = []
        per_row = _seeds_pass(config, overrides, out, seeds, settings, busy, show_progress)
        abl = run_ablations(config, overrides, out, settings, names, busy, show_progress) if names else {}
        if not busy:
            break
        _say(show_progress, f"waiting for another study process to finish: {', '.join(busy)} (if none runs any "
                            f"more, e.g. it ran on another machine, delete {out / '.claims'} and start again)")
        time.sleep(60)
    table = {name: {k: _mean_std([row.get(k) for row in rows]) for k, *_ in COLUMNS} for name, rows in per_row.items()}
    runs = sorted(p.parent for p in out.glob("*/*/config.yaml") if ".unstarted-" not in p.parent.name)
    results = {"config": to_dict(base), "seeds": seeds, "settings": settings, "rows": per_row, "table": table,
               "ablations": abl, "provenance": {str(r.relative_to(out)): provenance(r) for r in runs}, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "study_wall_s_this_session": round(time.time() - t0, 1)}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "results.md").write_text(results_markdown(results, config, overrides, out))
    from .study_report import study_report
    study_report(out, results)
    return out


def _seeds_pass(config, overrides, out: Path, seeds: int, settings: dict, busy: list, show_progress: bool) -> dict:
    """One pass over every seed's runs and rows: does what no other process has claimed and lists
    in `busy` what another `dualat study` on the same OUT is doing right now."""
    per_row: dict[str, list[dict]] = {name: [] for name, *_ in ROWS}
    for s in range(seeds):
        for method in ("plain", "dat", "jem"):
            run_dir = out / f"seed{s}" / method
            if _done(run_dir):
                continue
            _share(out, f"seed{s}-{method}", f"seed{s}/{method}", busy,
                   lambda: ensure_run(config, list(overrides) + [f"method={method}", f"seed={s}"], run_dir,
                                      show_progress), announce=show_progress and f"== seed {s}: {method}")
        for name, folder, checkpoint, sampler in ROWS:
            run_dir = out / f"seed{s}" / folder
            r = {}
            if _done(run_dir) and any((run_dir / f).is_file() for f in ("stage1.pt", "model_ema.safetensors",
                                                                        "model.safetensors", "last.pt")):
                # fresh SGLD chains: the same weights as the replay-buffer row, so only generation
                r = _share(out, f"seed{s}-{folder}-{checkpoint}-{sampler}",
                           f"seed{s}/{folder} evaluation ({checkpoint}, {sampler})", busy,
                           lambda: evaluate_row(run_dir, checkpoint, sampler, settings, show_progress,
                                                robust=sampler != "sgld"),
                           cached=run_dir / f"eval-study-{checkpoint}-{sampler}" / "metrics.json") or {}
            div = _diverged(run_dir)
            passes, wall = passes_and_wall(run_dir, checkpoint) if _done(run_dir) else (math.nan, math.nan)
            per_row[name].append({**{k: r.get(k) for k, *_ in COLUMNS}, "passes_M": passes / 1e6,
                                  "wall_min": wall / 60, "diverged": 1.0 if div else 0.0,
                                  "diverged_at": div and div.get("iteration"), "seed": s, "run": str(run_dir)})
    for fresh, buffer in zip(per_row["JEM (fresh SGLD chains)"], per_row["JEM (replay buffer)"]):
        for k in SHARED_BY_JEM_ROWS:
            fresh[k] = buffer.get(k)
    return per_row


def run_ablations(config, overrides, out: Path, settings: dict, names: list[str], busy: list,
                  show_progress: bool) -> dict:
    """DAT variants from the seed-0 stage-1 weights (stage 1 not retrained), evaluated like DAT."""
    stage1 = out / "seed0" / "dat" / "stage1.pt"
    if not stage1.is_file():
        return {}
    rows = {}
    for name in names:
        extra = ABLATIONS[name]
        run_dir = out / "ablations" / name
        if not _done(run_dir):
            _share(out, f"ablation-{name}", f"ablation {name}", busy,
                   lambda: ensure_run(config, list(overrides) + ["method=dat", "seed=0", f"stage1.init={stage1.resolve()}",
                                                                 "stage1.iterations=0"] + extra, run_dir, show_progress),
                   announce=show_progress and f"== ablation {name}: {' '.join(extra)}")
        r = {}
        if _done(run_dir) and ((run_dir / "model_ema.safetensors").is_file() or (run_dir / "last.pt").is_file()):
            r = _share(out, f"ablation-{name}-eval", f"ablation {name} evaluation", busy,
                       lambda: evaluate_row(run_dir, "ema", "pgd", {**settings, "n_autoattack": 0}, show_progress),
                       cached=run_dir / "eval-study-ema-pgd" / "metrics.json") or {}
        summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
        rows[name] = {"overrides": extra, "clean_acc": r.get("clean_acc"), "pgd_L2_acc": r.get("pgd_L2_acc"),
                      "fd": r.get("fd"), "precision": r.get("precision"), "recall": r.get("recall"),
                      "T_final": (summary.get("stage2") or {}).get("T_final"), "diverged": _diverged(run_dir)}
    return rows


def _cell(mean: float, std: float, scale: float, fmt: str, n: int) -> str:
    if math.isnan(mean):
        return "-"
    text = fmt.format(mean * scale)
    return text + (" ± " + fmt.format(std * scale) if n > 1 else "")


def results_markdown(results: dict, config, overrides, out: Path) -> str:
    s = results["settings"]
    n = results["seeds"]
    lines = [f"# Study: {results['config']['name']}", "",
             f"Command: `dualat study {config} --seeds {n} --out {out}"
             + "".join(" " + o for o in s.get("options", [])) + (" " + " ".join(overrides) if overrides else "") + "`",
             "", f"Machine: {results['machine']}, PyTorch {results['torch']}, {results['threads']} torch thread(s) "
             "in the process that wrote this table (each run's own threads are listed below). "
             f"Mean ± standard deviation over {n} seed(s). Clean and PGD-20 accuracy on "
             f"{'all' if s['n_test'] is None else s['n_test']} test images, AutoAttack (standard, L2, "
             f"eps = the run's) on the first {s['n_autoattack']}; generative metrics of {s['n_samples']} samples "
             f"against {s['n_ref']} test images in the evaluation network's features (FD is NOT an FID); "
             f"PGD sampler: {s['sample_steps']} steps of {s['sample_step_size']:g} from held-out seeds; JEM: "
             f"samples of the replay buffer, or fresh SGLD chains of {s['sgld_steps']} steps (the same weights: "
             "the fresh-chain row repeats the buffer row's accuracies; the buffer row's sampling steps are the "
             "SGLD steps of each training iteration, on chains that persist across iterations). Passes = forward/"
             "backward image passes of training; wall time as measured (includes periodic evaluation; "
             "on a shared machine it overstates the cost).", "",
             "| model | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, cols in results["table"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(*cols[k], scale, fmt, n) for k, _, scale, fmt in COLUMNS) + " |")
    div = [(name, r["seed"], r["diverged_at"]) for name, rows in results["rows"].items() for r in rows if r["diverged"]]
    lines += ["", "Divergences: " + ("; ".join(f"{a} seed {b} at iteration {c}" for a, b, c in div) if div else "none")]
    if results.get("provenance"):
        lines += ["", "Which code trained each run (from its log; a study adopts finished runs it finds in OUT):", ""]
        lines += [f"- `{name}`: {text}" for name, text in results["provenance"].items()]
    if results["ablations"]:
        lines += ["", "## Ablations (DAT, seed 0, from the seed-0 stage-1 weights; PGD-20 L2, same sampler)", "",
                  "| variant | overrides | clean acc | PGD-20 L2 | FD (evalnet) | precision | recall | final T | diverged |",
                  "|---|---|---|---|---|---|---|---|---|"]
        base = results["rows"]["DAT"][0]
        lines.append(f"| DAT (reference) | preset | {_pct(base.get('clean_acc'))} | {_pct(base.get('pgd_L2_acc'))} | "
                     f"{_num(base.get('fd'))} | {_num(base.get('precision'), 3)} | {_num(base.get('recall'), 3)} | - | - |")
        for name, r in results["ablations"].items():
            lines.append(f"| {name} | `{' '.join(r['overrides'])}` | {_pct(r['clean_acc'])} | {_pct(r['pgd_L2_acc'])} | "
                         f"{_num(r['fd'])} | {_num(r['precision'], 3)} | {_num(r['recall'], 3)} | "
                         f"{r['T_final'] if r['T_final'] is not None else '-'} | "
                         f"{'at ' + str(r['diverged']['iteration']) if r['diverged'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _num(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


__all__ = ["study", "ROWS", "ABLATIONS"]
