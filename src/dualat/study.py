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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import load_config, to_dict
from .data import data_info
from .errors import DualatError
from .evaluate.cftable import comparison_markdown
from .explain import explain_to_dir, run_radii
from .rundir import RunDir
from .sampler import default_step_size
from .study_report import cell, results_markdown, study_report
from .study_runs import (divergence, ensure_run, evaluate_counterfactuals, evaluate_row, finished, passes_and_wall,
                         provenance, say)
from .worklock import claim

# (row name, run folder, checkpoint, sampler)
ROWS = [("plain classifier", "plain", "stage1", "pgd"),
        ("adversarial training (stage 1)", "dat", "stage1", "pgd"),
        ("DAT", "dat", "ema", "pgd"),
        ("JEM (replay buffer)", "jem", "model", "buffer"),
        ("JEM (fresh SGLD chains)", "jem", "model", "sgld")]
# An ablation that would not change the study's config (the default already has its setting, e.g.
# auc_threshold_0.6 since the Gaussian-seed preset) is skipped and named in results.md (no_op_ablations).
ABLATIONS = {
    "auc_threshold_0.6": ["stage2.auc_threshold=0.6"],
    "auc_threshold_0.8": ["stage2.auc_threshold=0.8"],
    "t_max_20": ["stage2.t_max=20"],
    "batchnorm_active": ["stage2.freeze_bn=false"],
    "noise_seeds": ["data.seeds=noise"],
    "patch_seeds": ["data.seeds=patches"],
    "gaussian_seeds": ["data.seeds=gaussian"],
}
# the fresh-chain JEM row evaluates the replay-buffer row's weights: these columns are that model's
FRESH_JEM_ROW = "JEM (fresh SGLD chains)"  # the replay-buffer row's weights: its robustness is that row's
SHARED_BY_JEM_ROWS = ("clean_acc", "autoattack_L2_acc", "pgd_L2_acc")
COLUMNS = [("clean_acc", "clean acc", 100, "{:.2f}"), ("autoattack_L2_acc", "AutoAttack L2", 100, "{:.2f}"),
           ("pgd_L2_acc", "PGD-20 L2", 100, "{:.2f}"), ("fd", "FD (evalnet)", 1, "{:.2f}"),
           ("inception_score", "IS (evalnet)", 1, "{:.2f}"), ("precision", "precision", 1, "{:.3f}"),
           ("recall", "recall", 1, "{:.3f}"), ("sample_steps", "sampling steps", 1, "{:.0f}"),
           ("passes_M", "fwd/bwd passes (M images)", 1, "{:.2f}"), ("wall_min", "wall time (min)", 1, "{:.1f}"),
           ("diverged", "divergences", 1, "{:.0f}")]


def _share(out: Path, key: str, label: str, busy: list, work, cached: Path | None = None, announce=None):
    """work() unless another `dualat study` on OUT holds the claim `key` (then `label` goes to busy
    and None is returned); a finished piece (`cached` exists) is read without claiming. `announce`:
    a line printed when this process takes the piece on."""
    if cached is not None and cached.is_file():
        return work()
    with claim(out / ".claims" / key) as mine:
        if mine:
            say(bool(announce), announce or "")
            return work()
    busy.append(label)
    return None


def _mean_std(values: list[float]) -> tuple[float, float]:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return math.nan, math.nan
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


@dataclass
class StudyOptions:
    """Every setting of `study` / `dualat study` (the CLI builds it)."""
    seeds: int = 3
    n_autoattack: int = 1000
    n_samples: int = 2000
    n_ref: int = 10000
    n_test: int | None = None
    sample_steps: int | None = None
    sample_step_size: float | None = None   # Python API only
    sgld_steps: int | None = None
    ablations: object = True                # True (all of ABLATIONS), False, or a list of ABLATIONS names
    show_progress: bool = True
    counterfactuals: bool = False           # also the counterfactual family of every model (below)


def study(config, out=None, overrides=(), options: StudyOptions | None = None, **settings) -> Path:
    """Run (or continue) the study; returns OUT. See the module docstring for what it does.

    The settings: a StudyOptions or its fields as keywords (study("digits", seeds=2, out=...)).
    counterfactuals: also the counterfactual family of every model (not the fresh-chain JEM row:
    the same weights) at 1, 2, 3 x the L2 training eps, toward the judge's most likely wrong
    class, so that every model explains the same images toward the same targets; cached in
    RUN/eval-study-<checkpoint>-counterfactuals, tabled in results.md.
    """
    if options is not None and settings:
        raise TypeError("give StudyOptions or keywords, not both")
    o = options if options is not None else StudyOptions(**settings)
    seeds, show_progress, sample_step_size = o.seeds, o.show_progress, o.sample_step_size
    if seeds < 1:
        raise DualatError(f"--seeds must be at least 1, got {seeds}")
    names = list(ABLATIONS) if o.ablations is True else list(o.ablations or [])
    unknown = [a for a in names if a not in ABLATIONS]
    if unknown:
        raise DualatError(f"unknown ablation {unknown[0]!r}; choose from {', '.join(ABLATIONS)}")
    base = load_config(config, list(overrides))  # validates the config and the overrides up front
    requested = names
    names, skipped = no_op_ablations(config, overrides, requested, base)
    out = Path(out) if out else Path("runs") / f"study-{base.name}"
    out.mkdir(parents=True, exist_ok=True)
    step_size = sample_step_size or default_step_size(base)
    # the options that differ from the CLI's defaults, so results.md states a command that reproduces it
    flags = [f"--{flag} {value}" for flag, value, default in (
        ("n-autoattack", o.n_autoattack, 1000), ("n-samples", o.n_samples, 2000), ("n-ref", o.n_ref, 10000),
        ("n-test", o.n_test, None), ("steps", o.sample_steps, None), ("sgld-steps", o.sgld_steps, None),
        ("ablations", "none" if not requested else ",".join(requested), ",".join(ABLATIONS))) if value != default]
    flags += ["--counterfactuals"] if o.counterfactuals else []
    if sample_step_size:
        flags.append(f"(sample_step_size={sample_step_size:g}, Python API only)")
    settings = {"options": flags, "n_autoattack": o.n_autoattack, "n_samples": o.n_samples, "n_ref": o.n_ref,
                "n_test": o.n_test, "sample_steps": o.sample_steps,  # None: each run's own steps
                "sample_step_size": step_size, "sgld_steps": o.sgld_steps or base.stage2.t_max,
                "counterfactuals": o.counterfactuals,
                "cf_radii": run_radii(base, data_info(base.data)["shape"])[:3] if o.counterfactuals else None}
    t0 = time.time()
    while True:
        busy: list[str] = []
        per_row = _seeds_pass(config, overrides, out, seeds, settings, busy, show_progress)
        abl = run_ablations(config, overrides, out, settings, names, busy, show_progress) if names else {}
        if not busy:
            break
        say(show_progress, f"waiting for another study process to finish: {', '.join(busy)} (if none runs any "
                            f"more, e.g. it ran on another machine, delete {out / '.claims'} and start again)")
        time.sleep(60)
    table = {name: {k: _mean_std([row.get(k) for row in rows]) for k, *_ in COLUMNS} for name, rows in per_row.items()}
    runs = sorted(p.parent for p in out.glob("*/*/config.yaml") if ".unstarted-" not in p.parent.name)
    results = {"config": to_dict(base), "seeds": seeds, "settings": settings, "rows": per_row, "table": table,
               "ablations": abl, "ablations_skipped": skipped, "provenance": {str(r.relative_to(out)): provenance(r) for r in runs}, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "study_wall_s_this_session": round(time.time() - t0, 1)}
    if o.counterfactuals:
        results["counterfactuals"] = {name: [r.get("counterfactuals") for r in rows] for name, rows in per_row.items()}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    view = table_view(results)
    md = results_markdown(results, view, config, overrides, out)
    if o.counterfactuals:
        md += (f"\n## Counterfactuals measured\n\nL2 radii {settings['cf_radii']}, the same images and targets (the "
               "judge's most likely wrong class) for every model; protocol in each model's "
               "RUN/eval-study-<checkpoint>-counterfactuals/metrics.json\n\n"
               + comparison_markdown(results["counterfactuals"]))
    (out / "results.md").write_text(md)
    explain_for_report(out)
    study_report(out, results, view)
    return out


def no_op_ablations(config, overrides, names: list[str], base=None) -> tuple[list[str], dict]:
    """Split ablation names into those that change the study's config and those that do not
    (returned as {name: its overrides}, e.g. noise_seeds when the config already has data.seeds=noise)."""
    base = to_dict(base if base is not None else load_config(config, list(overrides)))
    keep, skipped = [], {}
    for name in names:
        if to_dict(load_config(config, list(overrides) + ABLATIONS[name])) == base:
            skipped[name] = ABLATIONS[name]
        else:
            keep.append(name)
    return keep, skipped


def table_view(results: dict) -> dict:
    """What the page and results.md show of the table: column labels, each row's formatted cells,
    and ROWS (which run folder and evaluation each row's samples come from)."""
    n = results["seeds"]
    return {"columns": [label for _, label, _, _ in COLUMNS], "rows": ROWS,
            "cells": {name: [cell(*cols[k], scale, fmt, n) for k, _, scale, fmt in COLUMNS]
                      for name, cols in results["table"].items()}}


def explain_for_report(out: Path, show_progress: bool = False) -> None:
    """Counterfactual panels of the seed-0 DAT run (EMA and stage-1 weights, misclassified test
    images) in seed0/dat/explain-study-<checkpoint>/, unless already there."""
    dat = out / "seed0" / "dat"
    for checkpoint in ("ema", "stage1"):
        target = dat / f"explain-study-{checkpoint}"
        if not target.is_dir() and ((dat / RunDir.EMA_WEIGHTS).is_file() or checkpoint == "stage1") \
                and (dat / RunDir.STAGE1).is_file():
            explain_to_dir(dat, images="misclassified", n=2, checkpoint=checkpoint, out=target,
                           show_progress=show_progress, command=["dualat study"])


def _seeds_pass(config, overrides, out: Path, seeds: int, settings: dict, busy: list, show_progress: bool) -> dict:
    """One pass over every seed's runs and rows: does what no other process has claimed and lists
    in `busy` what another `dualat study` on the same OUT is doing right now."""
    per_row: dict[str, list[dict]] = {name: [] for name, *_ in ROWS}
    for s in range(seeds):
        for method in ("plain", "dat", "jem"):
            run_dir = out / f"seed{s}" / method
            if finished(run_dir):
                continue
            _share(out, f"seed{s}-{method}", f"seed{s}/{method}", busy,
                   lambda: ensure_run(config, list(overrides) + [f"method={method}", f"seed={s}"], run_dir,
                                      show_progress), announce=show_progress and f"== seed {s}: {method}")
        for name, folder, checkpoint, sampler in ROWS:
            run_dir = out / f"seed{s}" / folder
            r = {}
            if finished(run_dir) and any((run_dir / f).is_file() for f in (RunDir.STAGE1, RunDir.EMA_WEIGHTS,
                                                                        RunDir.WEIGHTS, RunDir.STATE)):
                # fresh SGLD chains: the same weights as the replay-buffer row, so only generation
                r = _share(out, f"seed{s}-{folder}-{checkpoint}-{sampler}",
                           f"seed{s}/{folder} evaluation ({checkpoint}, {sampler})", busy,
                           lambda: evaluate_row(run_dir, checkpoint, sampler, settings, show_progress,
                                                robust=name != FRESH_JEM_ROW),
                           cached=run_dir / f"eval-study-{checkpoint}-{sampler}" / "metrics.json") or {}
            div = divergence(run_dir)
            passes, wall = passes_and_wall(run_dir, checkpoint) if finished(run_dir) else (math.nan, math.nan)
            per_row[name].append({**{k: r.get(k) for k, *_ in COLUMNS}, "passes_M": passes / 1e6,
                                  "wall_min": wall / 60, "diverged": 1.0 if div else 0.0,
                                  "diverged_at": div and div.get("iteration"), "seed": s, "run": str(run_dir)})
            if settings["counterfactuals"] and r and name != FRESH_JEM_ROW:
                cf = _share(out, f"seed{s}-{folder}-{checkpoint}-cf",
                            f"seed{s}/{folder} counterfactuals ({checkpoint})", busy, lambda: evaluate_counterfactuals(run_dir, checkpoint, settings, show_progress),
                            cached=run_dir / f"eval-study-{checkpoint}-counterfactuals" / "metrics.json") or {}
                per_row[name][-1]["counterfactuals"] = cf.get("counterfactuals")
    for fresh, buffer in zip(per_row[FRESH_JEM_ROW], per_row["JEM (replay buffer)"]):
        for k in SHARED_BY_JEM_ROWS:
            fresh[k] = buffer.get(k)
    return per_row


def run_ablations(config, overrides, out: Path, settings: dict, names: list[str], busy: list,
                  show_progress: bool) -> dict:
    """DAT variants from the seed-0 stage-1 weights (stage 1 not retrained), evaluated like DAT."""
    stage1 = out / "seed0" / "dat" / RunDir.STAGE1
    if not stage1.is_file():
        return {}
    rows = {}
    for name in names:
        extra = ABLATIONS[name]
        run_dir = out / "ablations" / name
        if not finished(run_dir):
            _share(out, f"ablation-{name}", f"ablation {name}", busy,
                   lambda: ensure_run(config, list(overrides) + ["method=dat", "seed=0", f"stage1.init={stage1.resolve()}",
                                                                 "stage1.iterations=0"] + extra, run_dir, show_progress),
                   announce=show_progress and f"== ablation {name}: {' '.join(extra)}")
        r = {}
        if finished(run_dir) and ((run_dir / RunDir.EMA_WEIGHTS).is_file() or (run_dir / RunDir.STATE).is_file()):
            r = _share(out, f"ablation-{name}-eval", f"ablation {name} evaluation", busy,
                       lambda: evaluate_row(run_dir, "ema", "pgd", {**settings, "n_autoattack": 0}, show_progress),
                       cached=run_dir / "eval-study-ema-pgd" / "metrics.json") or {}
        summary = json.loads((run_dir / RunDir.SUMMARY).read_text()) if (run_dir / RunDir.SUMMARY).is_file() else {}
        rows[name] = {"overrides": extra, "clean_acc": r.get("clean_acc"), "pgd_L2_acc": r.get("pgd_L2_acc"),
                      "fd": r.get("fd"), "precision": r.get("precision"), "recall": r.get("recall"),
                      "T_final": (summary.get("stage2") or {}).get("T_final"), "diverged": divergence(run_dir)}
    return rows


__all__ = ["study", "StudyOptions", "ROWS", "ABLATIONS", "no_op_ablations"]
