"""The samplers, registered by name as models are: `pgd` (DAT's sampler: ascent on f_y from
held-out seeds, sampler.py), `sgld` (fresh SGLD chains from a JEM run's initial distribution) and
`buffer` (random images of a JEM run's final replay buffer), sgld.py. Each is a small class whose
`chunks(draw)` yields one chunk type, `Chunk(start, labels, starts, samples)`; a `Draw` holds what
one sampling job needs. Whatever depends on a sampler's name asks its class here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple

import torch

from .errors import DualatError
from .sampler import generate_batches
from .sgld import InitialDistribution, predictions, sgld
from .ui import progress


class Chunk(NamedTuple):
    start: int                  # index of the chunk's first sample
    labels: torch.Tensor        # (b,) int64: the class conditioned on (pgd) or the model's prediction (JEM's)
    starts: torch.Tensor        # (b, ...) in [0, 1]: the seeds / chain starts (CPU)
    samples: torch.Tensor       # (b, ...) in [0, 1] (CPU)


@dataclass
class Draw:
    """One sampling job: n samples of `model` from one generator seeded `seed`, chunk by chunk.

    pgd: `labels` (n,) conditioning classes and `seeds` (a seed source or a tensor), `autocast`,
    `share` = (rank, world_size) for this process's chunks only; sgld: `init` (where chains start),
    `noise`, `clamp`; buffer: `images` (the replay buffer) and `init` (the starts it reports)."""
    model: torch.nn.Module
    n: int
    steps: int = 0
    step_size: float = 0.0
    seed: int = 0
    labels: torch.Tensor | None = None
    seeds: object = None
    init: InitialDistribution | None = None
    images: torch.Tensor | None = None
    noise: float = 0.0
    clamp: bool = True
    batch_size: int = 500
    share: tuple[int, int] = (0, 1)
    autocast: object = None
    show_progress: bool = False


class PGDSampler:
    name = "pgd"
    takes_steps = True          # a step count means something to it (step sweeps)
    needs_replay_buffer = False  # it samples any run
    float32 = False             # its model forwards run in the run's precision
    shards = True               # under torchrun each process draws its share of the chunks
    study_settings = ("sample_steps", "sample_step_size")  # the study's settings of its steps, step size

    def count(self, d: Draw) -> int:
        return len(d.labels)

    def chunks(self, d: Draw) -> Iterator[Chunk]:
        g = torch.Generator().manual_seed(d.seed)
        n, (rank, world), b = len(d.labels), d.share, d.batch_size
        total = sum(min(b, n - s) for s in range(rank * b, n, world * b))
        bar = progress(total, 0, f"sampling ({d.steps} steps)", d.show_progress)
        for start, x0, x in generate_batches(d.model, d.seeds, d.labels, d.steps, d.step_size, batch_size=b,
                                             generator=g, share=d.share, autocast=d.autocast):
            yield Chunk(start, d.labels[start:start + x.shape[0]], x0, x)
            bar.update(x.shape[0])
        bar.close()


class SGLDSampler:
    name, takes_steps, needs_replay_buffer, float32, shards = "sgld", True, True, True, False
    study_settings = ("sgld_steps", None)

    def count(self, d: Draw) -> int:
        return d.n

    def pick(self, d: Draw, g: torch.Generator):
        return None

    def chunks(self, d: Draw) -> Iterator[Chunk]:
        """Labels are the model's predictions; every process draws the same chains itself."""
        g = torch.Generator().manual_seed(d.seed)
        images = self.pick(d, g)
        n = self.count(d)
        device = next(d.model.parameters()).device
        bar = progress(n, 0, f"sampling ({self.name})", d.show_progress)
        for start in range(0, n, d.batch_size):
            m = min(d.batch_size, n - start)
            x0 = d.init.sample(m, g)
            if images is not None:
                x = images[start:start + m].float()
            else:
                x = sgld(d.model, x0.to(device), d.steps, d.step_size, d.noise, g, d.clamp).cpu()
            y = predictions(d.model, x, device)
            bar.update(m)
            yield Chunk(start, y, x0, x)
        bar.close()


class BufferSampler(SGLDSampler):
    name, takes_steps, study_settings = "buffer", False, (None, None)

    def count(self, d: Draw) -> int:
        return min(d.n, len(d.images))  # n capped at the buffer's size

    def pick(self, d: Draw, g: torch.Generator):
        return d.images[torch.randperm(len(d.images), generator=g)[:self.count(d)]]


SAMPLERS = {s.name: s for s in (PGDSampler(), BufferSampler(), SGLDSampler())}


def get_sampler(name: str):
    """The registered sampler called `name`; DualatError naming the choices otherwise."""
    if name not in SAMPLERS:
        raise DualatError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


__all__ = ["BufferSampler", "Chunk", "Draw", "PGDSampler", "SAMPLERS", "SGLDSampler", "get_sampler"]
