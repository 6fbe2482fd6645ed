"""The study's work on one run directory: train or continue it, read what it cost and which code
trained it, evaluate one of its models the study's way (cached in RUN/eval-study-*)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .config import load_config
from .errors import DualatError
from .evaluate.run import evaluate
from .methods import method_of
from .rundir import RunDir
from .samplers import get_sampler
from .training import train
from .ui import code_versions, read_log


def say(show: bool, text: str) -> None:
    if show:
        print(text, flush=True)


def ensure_run(config, overrides: list[str], out: Path, show_progress: bool) -> dict:
    """Train `out` unless finished (summary.json); resume it when a checkpoint exists. A
    divergence is recorded, not raised. Returns {'dir', 'diverged'}."""
    if (out / RunDir.SUMMARY).is_file():
        pass
    elif (out / RunDir.CONFIG).is_file() and (out / RunDir.STATE).is_file() and not (out / RunDir.DIVERGED).is_file():
        _train_recording(None, [], out, show_progress, resume=True)
    elif not (out / RunDir.DIVERGED).is_file():
        if (out / RunDir.CONFIG).is_file():   # stopped before its first checkpoint: nothing to resume
            aside = out.with_name(f"{out.name}.unstarted-{int(time.time())}")
            out.rename(aside)
            say(show_progress, f"{out} had no checkpoint yet; its files moved to {aside}, training it afresh")
        _train_recording(config, overrides, out, show_progress)
    return {"dir": out, "diverged": divergence(out)}


def finished(run_dir: Path) -> bool:
    """A run the study can evaluate: finished, or stopped by a recorded divergence."""
    return (run_dir / RunDir.SUMMARY).is_file() or (run_dir / RunDir.DIVERGED).is_file()


def _train_recording(config, overrides, out: Path, show_progress: bool, resume: bool = False) -> None:
    try:
        train(config, overrides, out=None if resume else out, resume=out if resume else None,
              show_progress=show_progress)
    except DualatError:
        if not (out / RunDir.DIVERGED).is_file():  # a user mistake, not a divergence
            raise


def divergence(run_dir: Path) -> dict | None:
    p = run_dir / RunDir.DIVERGED
    return json.loads(p.read_text()) if p.is_file() else None


def passes_and_wall(run_dir: Path, which: str, _depth: int = 0) -> tuple[float, float]:
    """(forward/backward image passes, wall seconds) that produced a row's weights. A stage 1 taken
    from another run (`stage1.init`) counts that run's stage 1; NaN when that run cannot be found."""
    cfg = load_config(run_dir / RunDir.CONFIG)
    summary = json.loads((run_dir / RunDir.SUMMARY).read_text()) if (run_dir / RunDir.SUMMARY).is_file() else {}
    s1 = cfg.stage1
    method = method_of(cfg)
    if method.replay_buffer:
        j = summary.get("jem") or {}
        return float(j.get("passes", math.nan)), float(j.get("wall_s", math.nan))
    wall1 = float((summary.get("stage1") or {}).get("wall_s", math.nan))
    if not method.adversarial:  # the plain classifier: one clean pass per image
        return float(s1.iterations * s1.batch_size), wall1
    passes = float(s1.iterations * (s1.attack.steps + 1) * s1.batch_size)
    if s1.init:
        init_passes, init_wall = _init_cost(Path(s1.init), run_dir, _depth)
        passes, wall1 = passes + init_passes, wall1 + init_wall
    if which == "stage1":
        return passes, wall1
    s2 = cfg.stage2
    last, total_t = 0, 0.0
    for r in read_log(run_dir):
        if r.get("stage") == 2 and "T" in r and "event" not in r:
            total_t += r["T"] * (r["iteration"] - last)   # the log keeps the mean T of each interval
            last = r["iteration"]
    passes += (total_t + last * (cfg.threat.steps + 3)) * s2.batch_size
    return passes, wall1 + float((summary.get("stage2") or {}).get("wall_s", math.nan))


def _init_cost(init: Path, run_dir: Path, depth: int) -> tuple[float, float]:
    """The stage-1 passes and wall of the run whose checkpoint `init` names; NaN when the folder
    holding it is not a finished run directory (a bare checkpoint, or one moved away)."""
    where = init.parent
    if depth < 8 and (where / RunDir.CONFIG).is_file() and (where / RunDir.SUMMARY).is_file() \
            and where.resolve() != run_dir.resolve():
        return passes_and_wall(where, "stage1", depth + 1)
    return math.nan, math.nan


def provenance(run_dir: Path) -> str:
    """The code versions a run's log names (start and resume events), its threads and memory format."""
    events = [r for r in read_log(run_dir) if r.get("event") in ("start", "resume")] \
        if (run_dir / RunDir.METRICS).is_file() else []
    code = [c or "not recorded (logs before dualat recorded its version)" for c in code_versions(events)]
    cfg = load_config(run_dir / RunDir.CONFIG)
    return (f"{'; '.join(code) or 'no log'}; {len(events)} start/resume event(s); threads {cfg.threads or 'auto'}; "
            f"{'channels_last' if cfg.model.channels_last else 'contiguous'} memory format")


def evaluate_row(run_dir: Path, checkpoint: str, sampler: str, settings: dict, show_progress: bool,
                 robust: bool = True) -> dict:
    """The study's evaluation of one model (cached in RUN/eval-study-<checkpoint>-<sampler>)."""
    out = run_dir / f"eval-study-{checkpoint}-{sampler}"
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    how_to = get_sampler(sampler)
    steps_key, step_size_key = how_to.study_settings
    # the PGD sampler with no --steps: None, the run's own default (its sample_steps.json, else its final T)
    steps = settings[steps_key] if steps_key else None
    return evaluate(run_dir, checkpoint, robust=robust, generative=True, ood=False, calibrate=robust,
                    norm="L2", n=settings["n_test"], pgd_steps=20, autoattack=robust and settings["n_autoattack"] > 0,
                    n_autoattack=settings["n_autoattack"] or None, n_samples=settings["n_samples"],
                    steps=steps, step_size=settings[step_size_key] if step_size_key else None,
                    ref_split="test", n_ref=settings["n_ref"], sampler=sampler, out=out,
                    show_progress=show_progress)


def evaluate_counterfactuals(run_dir: Path, checkpoint: str, settings: dict, show_progress: bool) -> dict:
    """The counterfactual family of one model (cached in RUN/eval-study-<checkpoint>-counterfactuals):
    the study's radii, targets = the judge's most likely wrong class (the same for every model)."""
    out = run_dir / f"eval-study-{checkpoint}-counterfactuals"
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    return evaluate(run_dir, checkpoint, robust=False, generative=False, ood=False, calibrate=False,
                    counterfactuals=True, cf_target="wrong-judge", radii=settings["cf_radii"], out=out,
                    show_progress=show_progress)
