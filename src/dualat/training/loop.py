"""The one training-loop skeleton that stage 1, DAT and JEM run on.

A stage supplies its step and its state (a `Stage`); the skeleton owns what they share: resume,
the learning-rate schedule, the logging cadence, periodic evaluation (on isolated RNGs, after a
check that the weights are finite), best-of weights, checkpoints, and the one divergence record.

Divergence policy (every method): when a loss or a weight turns non-finite or passes its stage's
loss_bound, the diverging step is not applied; the run writes diverged.json (atomically: stage,
iteration, values, last_good_checkpoint) and a `diverged` log event, keeps last.pt from the last
good checkpoint and writes no final weights; summary.json records the divergence beside what was
done. Then `train` raises DualatError (the CLI: one line, exit status 1) naming the learning rate
to lower and `--resume`. The study records such a run as diverged and goes on.
"""
from __future__ import annotations

import json
import math
import time

from ..atomic import atomic_write_text
from ..optim import learning_rate, set_lr
from ..rundir import RunDir
from ..ui import progress
from .common import Diverged, isolated_rng, parameters_finite, set_rng_state
from .context import RunContext
from .log import Averager


class Stage:
    """What one training stage supplies. Subclasses set the attributes and implement the hooks."""

    stage: int | str = 0                  # 1, 2 or "jem": the checkpoint's and the log's stage
    label = ""                            # progress-bar label
    evaluates = False                     # periodic evaluation every eval.every iterations
    best: dict = {}                       # metric -> (weights file, "min" | "max"): best-of weights

    def __init__(self, run: RunContext, iterations: int, optim, opt):
        self.run, self.iterations, self.optim, self.opt = run, iterations, optim, opt
        self.last_eval: dict = {}
        self.best_values = {k: (math.inf if how == "min" else -1.0) for k, (_, how) in self.best.items()}

    def load(self, state: dict) -> None:
        """Restore the stage's own entries of a checkpoint (model, optimiser, streams, ...)."""

    def step(self, it: int) -> dict:
        """One iteration (0-based `it`): returns float metrics; raises Diverged before a bad update."""
        raise NotImplementedError

    def postfix(self, rec: dict) -> dict:
        return {}

    def log_fields(self, done: int) -> dict:
        """Extra entries of the iteration's log record, after stage / iteration / lr."""
        return {}

    def evaluate(self, done: int) -> dict:
        raise NotImplementedError

    def eval_model(self):
        """The weights evaluated and kept as best-of (the EMA model for DAT)."""
        return self.run.model

    def state(self) -> dict:
        """The stage's own checkpoint entries."""
        raise NotImplementedError


def resume(stage: Stage, state: dict | None) -> tuple[int, float]:
    """(start iteration, elapsed seconds): a fresh start, or the checkpoint `state` restored."""
    if state is None:
        return 0, 0.0
    state = stage.run.own_state(state)
    stage.load(state)
    stage.last_eval = dict(state.get("last_eval", {}))
    if stage.best:
        stage.best_values = {k: float(v) for k, v in state["best"].items()}
    set_rng_state(state["rng"])
    return state["iteration"], state["elapsed"]


def run_loop(stage: Stage, start: int, elapsed: float) -> float:
    """Iterations start..stage.iterations of `stage`; returns the elapsed seconds in all."""
    run = stage.run
    cfg = run.cfg
    avg, t0 = Averager(), time.time()
    bar = progress(stage.iterations, start, stage.label, run.show_progress)
    try:
        for it in range(start, stage.iterations):
            lr = learning_rate(stage.optim, it, stage.iterations)
            set_lr(stage.opt, lr)
            avg.add(stage.step(it))
            bar.update(1)
            done = it + 1
            last = done == stage.iterations
            if done % cfg.log.every == 0 or last:
                rec = avg.pop()
                bar.set_postfix(**stage.postfix(rec))
                run.log.write({"stage": stage.stage, "iteration": done, "lr": lr, **stage.log_fields(done), **rec})
            if stage.evaluates and (done % cfg.eval.every == 0 or last):
                periodic_evaluation(stage, done)
            if done % cfg.log.checkpoint_every == 0 or last:
                run.save_state({"stage": stage.stage, "iteration": done, "elapsed": elapsed + time.time() - t0,
                                **stage.state()})
    finally:
        bar.close()
    return elapsed + time.time() - t0


def periodic_evaluation(stage: Stage, done: int) -> None:
    """Evaluate (RNGs untouched, so where evaluations fall never changes training) and keep the
    best-of weights; weights that are no longer finite are a divergence, before any file is written."""
    run = stage.run
    if not (parameters_finite(run.model) and parameters_finite(stage.eval_model())):
        raise Diverged(stage.stage, done, {"parameters": float("nan")})
    with isolated_rng():
        stage.last_eval = stage.evaluate(done)
    for key, (name, how) in stage.best.items():
        value = stage.last_eval.get(key, math.inf if how == "min" else -math.inf)
        if (value < stage.best_values[key]) if how == "min" else (value > stage.best_values[key]):
            stage.best_values[key] = value
            run.write({"model": stage.eval_model().state_dict(), "stage": stage.stage, "iteration": done,
                       "eval": scalars(stage.last_eval)}, name)


def scalars(ev: dict) -> dict:
    """The numbers and names of an evaluation (what a weights-only checkpoint can hold)."""
    return {k: v for k, v in ev.items() if isinstance(v, (int, float, str))}


def record_divergence(run: RunContext, exc: Diverged) -> dict:
    """The one divergence record: diverged.json (atomic) and a `diverged` log event; returns it."""
    info = {"stage": exc.stage, "iteration": exc.iteration, "values": {k: str(v) for k, v in exc.values.items()},
            "last_good_checkpoint": RunDir.STATE if (run.dir / RunDir.STATE).exists() else None}
    run.log.write({"event": "diverged", **info})
    if run.dist.is_main:
        atomic_write_text(run.dir / RunDir.DIVERGED, json.dumps(info, indent=1))
    return info
