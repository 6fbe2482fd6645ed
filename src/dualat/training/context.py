"""`RunContext`: the whole world of a training stage, as typed fields.

run.py builds it (data, seed sources, model, device, precision, log) and orchestrates the stages;
the stages (stage1.py, dat.py, jem.py) and the loop skeleton (loop.py) receive it and use only
these fields and the few helpers below (device transfer, checkpoint writes, the FD probe).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import distributed
from ..checkpoint import atomic_save
from ..config import Config, to_dict
from ..data import SeedSource
from ..evaluate import GenerationProbe, reference_stats
from ..evaluate.evalnet import load_evalnet
from ..evaluate.extractors import ClassifierExtractor
from ..images import class_grid, save_png
from ..rundir import RunDir
from ..seeding import SAMPLE_SEED
from .common import Diverged, parameters_finite, rng_state
from .log import MetricLog, NullLog

PER_RANK = ("streams", "generators", "rng")  # checkpoint entries each process has its own of


@dataclass
class RunContext:
    """What a training run holds. `dist`: this process among the torchrun processes (rank 0 alone
    logs and writes files); `precision` / `autocast`: what cfg.amp resolved to on `device`
    (dualat.precision); `seeds_train` / `seeds_test`: the seed sources' two splits."""
    cfg: Config
    dir: Path
    model: torch.nn.Module
    train_set: object
    test_set: object
    seeds_train: SeedSource
    seeds_test: SeedSource
    device: torch.device
    precision: str
    autocast: Callable | None
    dist: distributed.Dist
    log: MetricLog | NullLog
    show_progress: bool = True
    memory_format: torch.memory_format | None = None

    def trainer(self) -> torch.nn.Module:
        """The module for training forward/backward passes: DDP-wrapped model under torchrun."""
        return self.dist.wrap(self.model)

    def own_state(self, state: dict) -> dict:
        """A checkpoint with this process's own stream / generator / RNG states on top."""
        if "ranks" not in state:
            return state
        return {**state, **{k: state["ranks"][self.dist.rank][k] for k in PER_RANK}}

    def to_device(self, *tensors):
        out = []
        for t in tensors:
            t = t.to(self.device, non_blocking=True)
            if self.memory_format is not None and t.dim() == 4:
                t = t.contiguous(memory_format=self.memory_format)
            out.append(t)
        return out

    def attack_text(self) -> str:
        """How the periodic evaluations attack: 'PGD-10 L2 eps=0.5' (the run's threat model)."""
        a = self.cfg.threat
        return f"PGD-{self.cfg.eval.pgd_steps} {a.norm} eps={a.eps:g}"

    def say(self, text: str) -> None:
        if self.show_progress:
            print(text, flush=True)

    def save_state(self, state: dict) -> None:
        """Write last.pt atomically, refusing to write a model that holds NaN/inf.

        Under torchrun every process calls this: the states of all processes (streams,
        generators, RNG, a digest of the parameters, T) are gathered into `ranks` and rank 0
        writes the file, which then holds what a resume needs on every process.
        """
        if not parameters_finite(self.model):
            raise Diverged(state["stage"], state["iteration"], {"parameters": float("nan")})
        state["rng"] = rng_state()
        if self.dist.enabled:
            mine = {k: state[k] for k in PER_RANK}
            mine.update(params_sha256=distributed.parameter_digest(self.model),
                        T=state["curriculum"]["T"] if "curriculum" in state else None)
            state["ranks"] = self.dist.gather_objects(mine)
            state["world_size"] = self.dist.world_size
            self._check_lockstep(state)
        state["config"] = to_dict(self.cfg)
        self.write(state, RunDir.STATE)

    def _check_lockstep(self, state: dict) -> None:
        """Log (rank 0) when processes no longer hold the same parameters or T; never expected."""
        ranks = state["ranks"]
        if len({(r["params_sha256"], r["T"]) for r in ranks}) > 1:
            self.log.write({"event": "ranks_differ", "stage": state["stage"], "iteration": state["iteration"],
                            "T": [r["T"] for r in ranks], "params_sha256": [r["params_sha256"] for r in ranks]})
            self.say(f"warning: the {len(ranks)} processes hold different parameters or T at iteration "
                     f"{state['iteration']} (see metrics.jsonl); please report this")

    def write(self, obj, name: str) -> None:
        """atomic_save into the run directory, by rank 0 alone."""
        if self.dist.is_main:
            atomic_save(obj, self.dir / name)

    def save_grid(self, x, labels, name: str) -> None:
        if x.dim() == 4 and self.dist.is_main:
            save_png(class_grid(x, labels, self.train_set.num_classes, scale=2), self.dir / "samples" / name)

    def evalnet_features(self) -> Callable:
        """The evaluation network's features_and_predictions (trained and cached on first use)."""
        e = self.cfg.eval
        if not self.dist.is_main:
            self.dist.barrier()  # rank 0 trains and caches the evaluation network first, if needed
        net = load_evalnet(self.cfg.data, e.evalnet, e.evalnet_iterations, self.show_progress).to(self.device)
        if self.dist.is_main:
            self.dist.barrier()
        return ClassifierExtractor(net).features_and_predictions

    def generation_probe(self) -> GenerationProbe | None:
        """Seeds, labels and reference statistics for the Frechet-distance proxy (None for 2-D data)."""
        if len(self.train_set.shape) != 3:
            return None
        e = self.cfg.eval
        feats = self.evalnet_features()
        ref = reference_stats(feats, self.test_set)
        return GenerationProbe(feats, ref, self.seeds_test, self.train_set.num_classes, e.n_samples,
                               seed=self.cfg.seed + SAMPLE_SEED)
