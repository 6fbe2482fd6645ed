"""Each training stage's runner, by the stage names of dualat.methods (the one method -> stages
table); `run_method` runs a config's method stage by stage, resuming inside the checkpoint's stage."""
from __future__ import annotations

from ..checkpoint import safe_load
from ..errors import DualatError
from ..methods import method_of
from ..rundir import RunDir
from .context import RunContext
from .dat import run_stage2
from .jem import run_jem
from .stage1 import run_stage1


def _stage1(run: RunContext, state: dict | None) -> dict:
    """Stage 1, or its kept result when the checkpoint says it had finished (stage1.pt written)."""
    stage1_file = run.dir / RunDir.STAGE1
    if state is not None and state["iteration"] >= run.cfg.stage1.iterations and stage1_file.is_file():
        run.model.load_state_dict(state["model"])
        return safe_load(stage1_file)["eval"]
    return run_stage1(run, state)


def _stage1_done(run: RunContext) -> dict | None:
    """What a finished stage 1 reported (kept in stage1.pt), for a run resumed in a later stage."""
    stage1_file = run.dir / RunDir.STAGE1
    return safe_load(stage1_file)["eval"] if stage1_file.is_file() else None


# stage name -> (the checkpoint's `stage` value, runner(run, state) -> result, result of a finished one)
STAGES = {
    "stage1": (1, _stage1, _stage1_done),
    "stage2": (2, run_stage2, None),
    "jem": ("jem", run_jem, None),
}


def run_method(run: RunContext, state: dict | None, summary: dict) -> None:
    """Run the method's stages in order, adding each one's result to `summary` (under the stage's
    name) as it finishes; a checkpoint `state` resumes its own stage, and earlier stages report
    what they kept."""
    names = method_of(run.cfg).stages
    keys = [STAGES[name][0] for name in names]
    if state is not None and state["stage"] not in keys:
        raise DualatError(f"cannot resume: last.pt is a checkpoint of stage {state['stage']}, which "
                          f"method={run.cfg.method} does not have; resume with the run's own method")
    resumed = keys.index(state["stage"]) if state is not None else 0
    for i, name in enumerate(names):
        _, runner, finished = STAGES[name]
        if i < resumed:
            summary[name] = finished(run)
        else:
            summary[name] = runner(run, state if i == resumed else None)
