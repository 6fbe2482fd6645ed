"""Persistent contrastive chains for DAT (`stage2.contrastive=persistent`; default `fresh`).

Fresh chains (the paper's) start each iteration's contrastive samples at new seeds and run the
curriculum's T PGD steps. Persistent chains keep `stage2.buffer_size` contrastive samples instead,
each with its class label and its age, in the way JEM keeps its SGLD chains (`sgld.ReplayBuffer`,
which ContrastiveChains extends with labels and ages). Per iteration:

1. one chain per real image, of that image's class (DAT's contrastive samples take the real batch's
   labels, method.md section 3), drawn at random (with replacement) among the chains of that class;
2. a drawn chain restarts from a fresh training seed (the run's `data.seeds` family, augmented as
   fresh seeds are) with probability `stage2.reinit_prob`, or when T more steps would take it past
   `stage2.max_age`;
3. every drawn chain runs T more steps of the same operator as fresh chains (steps.py's
   `contrastive_samples`): the same T, so the same passes per iteration as fresh chains at that T;
4. the results are the BCE's contrastive batch (steps.py's `dat_update`), then go back into the
   buffer with age + T.

Age counts PGD steps since the chain's seed, not iterations: T changes with the curriculum and is
0 at first, so steps say how far a sample is from its seed (a fresh sample is always T old), and a
chain drawn while T = 0 does not age. With max_age >= T, no contrastive sample is more than max_age
steps from its seed; with max_age < T every chain restarts: fresh chains.

Slots: chain i holds class i mod K for the whole run (K classes; the buffer needs >= K chains).
A training device only: `dualat sample` and `eval` start fresh chains from the held-out seeds.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import DualatError
from ..sgld import ReplayBuffer
from .context import RunContext
from .steps import StepRig, contrastive_samples, dat_update


class ChainStarts:
    """Where DAT's chains start (a ReplayBuffer's `init`): `seeds(n, y, generator)` draws the
    run's training seeds for labels y, as fresh contrastive samples are drawn. Without labels
    (filling the buffer) the slots' own: 0, 1, ..., K-1, 0, 1, ..."""

    def __init__(self, seeds: Callable, num_classes: int):
        self.seeds, self.num_classes = seeds, num_classes

    def labels(self, n: int) -> torch.Tensor:
        return torch.arange(n) % self.num_classes

    def sample(self, n: int, generator: torch.Generator, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.seeds(n, self.labels(n) if y is None else y, generator)


class ContrastiveChains(ReplayBuffer):
    """A ReplayBuffer of contrastive samples with their labels (int64, slot i: class i mod K) and
    ages (int64, PGD steps since the seed). All on the CPU; the randomness comes from the two
    generators passed in: `generator` (which chains, which restart) and the seeds' generator."""

    def __init__(self, size: int, starts: ChainStarts, reinit_prob: float, max_age: int,
                 seed_generator: torch.Generator):
        if size < starts.num_classes:
            raise DualatError(f"config key stage2.buffer_size={size} must give each of the {starts.num_classes} "
                              f"classes a chain; use stage2.buffer_size={starts.num_classes} or more")
        super().__init__(size, starts, reinit_prob, seed_generator)
        self.labels = starts.labels(size)
        self.ages = torch.zeros(size, dtype=torch.int64)
        self.max_age = int(max_age)

    def draw(self, y: torch.Tensor, steps: int, generator: torch.Generator,
             seed_generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(indices, starts, ages) of one chain of class y[i] per i, about to run `steps` steps:
        restarted chains start at a fresh seed with age 0."""
        k, n = self.init.num_classes, len(y)
        y = y.cpu()
        slots = (len(self) - y + k - 1) // k  # the chains of class c are c, c + K, c + 2K, ...
        j = (torch.rand(n, generator=generator, dtype=torch.float64) * slots).long()
        idx = y + k * torch.minimum(j, slots - 1)
        ages = self.ages[idx]
        restart = (torch.rand(n, generator=generator) < self.reinit_prob) | (ages + steps > self.max_age)
        starts = self.images[idx]  # a copy: the buffer changes only in put()
        if restart.any():
            where = restart.nonzero().squeeze(1)
            starts[where] = self.init.sample(len(where), seed_generator, y[where])
            ages = ages.masked_fill(restart, 0)
        self.restarts += int(restart.sum())
        self.draws += n
        return idx, starts, ages

    def put(self, idx: torch.Tensor, x: torch.Tensor, ages: torch.Tensor) -> None:
        """Store the chains' new states and ages; a chain drawn twice in one batch keeps its later copy."""
        order = torch.arange(len(idx))
        last = torch.full((len(self),), -1, dtype=torch.int64).scatter_reduce(0, idx, order, reduce="amax")
        keep = last[idx] == order
        super().put(idx[keep], x.detach().cpu()[keep])
        self.ages[idx[keep]] = ages[keep]

    def mean_age(self) -> float:
        return float(self.ages.double().mean())

    def state_dict(self) -> dict:
        return {**super().state_dict(), "labels": self.labels, "ages": self.ages}

    def load_state_dict(self, state: dict) -> None:
        n = len(state["images"])
        if n != len(self):
            raise DualatError(f"last.pt holds {n} persistent chains but stage2.buffer_size={len(self)}; "
                              f"resume with stage2.buffer_size={n}")
        if not torch.equal(state["labels"], self.labels):
            raise DualatError("last.pt's persistent chains have other class labels than this run's "
                              f"{self.init.num_classes} classes give; resume with the run's own data")
        super().load_state_dict(state)
        self.ages = state["ages"].clone().long()


def persistent_step(run: RunContext, opt, chains: ContrastiveChains, real, at_batch, T: int, gens: dict,
                    rig: StepRig) -> dict:
    """One DAT step whose contrastive batch is `chains` continued by T steps (CPU batches `real`,
    `at_batch` as the streams give them; gens: the stage's "chains", "seeds" and "pgd" generators).
    Returns dat_update's metrics plus the buffer's mean age, the batch's (PGD steps since the seed;
    a fresh batch's is T) and the share of the batch restarted."""
    s2 = run.cfg.stage2
    before = chains.restarts
    idx, starts, ages = chains.draw(real[1], T, gens["chains"], gens["seeds"])
    x_r, y_r, x_a, y_a, starts = run.to_device(*real, *at_batch, starts)
    x_con = contrastive_samples(run.model, starts, y_r, T, s2.step_size, s2.objective, run.autocast)
    m = dat_update(run.model, opt, (x_r, y_r), x_con, (x_a, y_a), s2, gens["pgd"], rig, threat=run.cfg.threat)
    ages = ages + T
    chains.put(idx, x_con, ages)  # only once the step has passed its divergence guard
    return {**m, "buffer_age": chains.mean_age(), "contrastive_age": float(ages.double().mean()),
            "restarted": (chains.restarts - before) / len(idx)}


__all__ = ["ChainStarts", "ContrastiveChains", "persistent_step"]
