"""The samplers, registered by name as models are: `pgd` (DAT's sampler: ascent on f_y from
held-out seeds, sampler.py), `sgld` (fresh SGLD chains from a JEM run's initial distribution) and
`buffer` (random images of a JEM run's final replay buffer), sgld.py. Each is a small class whose
`chunks(draw)` yields one chunk type, `Chunk(start, labels, starts, samples)`; a `Draw` holds what
one sampling job needs. Whatever depends on a sampler's name asks its class here.

    generate(model, seeds, labels, steps, step_size)        -> (n, ...) float in [0, 1]
    generate_batches(draw, step_callback)                   -> (start, seeds, samples) per batch
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple

import torch

from .errors import DualatError
from .pgd import Unbounded, eval_mode, pgd
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
    `share` = (rank, world_size) for this process's chunks only, `unconditional` (ascend logsumexp
    instead of f_y); `generator` (instead of one seeded `seed`; seed None and no generator: the
    global RNG); sgld: `init` (where chains start), `noise`, `clamp`; buffer: `images` (the
    replay buffer) and `init` (the starts it reports)."""
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
    unconditional: bool = False
    generator: torch.Generator | None = None

    def rng(self) -> torch.Generator | None:
        """The generator the seeds (and chains) are drawn from."""
        if self.generator is not None:
            return self.generator
        return torch.Generator().manual_seed(self.seed) if self.seed is not None else None


def generate_batches(d: Draw, step_callback=None):
    """Yield (start, x0, x) per batch of the PGD sampler: seeds x0 and samples x, both (b, ...) in
    [0, 1] on the CPU.

    d.seeds: a seed source (`.sample(b, y, generator)`) or a tensor of seed images (n, ...);
    d.labels: (n,) int64 conditioning classes (also picks per-class Gaussian seeds), or None for
    unconditional sampling from a seed source (d.n samples). step_callback(start, i, x) sees the
    seeds (i = 0) and every iterate (i = 1..steps) of the batch starting at sample `start`. Seeds
    are drawn batch by batch from d.rng(), so the result is a function of (generator seed,
    batch_size). The model is used in eval mode. d.share = (rank, world_size): only batches rank,
    rank + world_size, ... are generated and yielded (one process of several); seeds are still
    drawn for every batch, so each sample is the same whatever the number of processes.
    """
    (rank, world), model, seeds, labels, generator = d.share, d.model, d.seeds, d.labels, d.rng()
    n = labels.shape[0] if labels is not None else (seeds.shape[0] if torch.is_tensor(seeds) else d.n)
    device = next(model.parameters()).device
    with eval_mode(model):
        for k, start in enumerate(range(0, n, d.batch_size)):
            stop = min(start + d.batch_size, n)
            y = labels[start:stop] if labels is not None else None
            x0 = seeds[start:stop] if torch.is_tensor(seeds) else seeds.sample(stop - start, y, generator)
            if k % world != rank:
                continue
            cb = None
            if step_callback is not None:
                step_callback(start, 0, x0)
                cb = lambda i, x, s=start: step_callback(s, i, x)  # noqa: E731
            x = pgd(model, x0.to(device), None if y is None else y.to(device),
                    objective="logsumexp" if d.unconditional else "class_logit", threat=Unbounded(),
                    steps=d.steps, step_size=d.step_size, callback=cb, autocast=d.autocast)
            yield start, x0.cpu(), x.cpu()


def generate(model, seeds, labels: torch.Tensor | None, steps: int, step_size: float,
             unconditional: bool = False, batch_size: int = 256, generator: torch.Generator | None = None,
             callback=None, autocast=None) -> torch.Tensor:
    """Samples (n, ...) in [0, 1]: ascend f_y (class-conditional) or logsumexp (unconditional).

    seeds: a seed source (`.sample(n, y, generator)`) or a tensor of seed images (n, ...);
    labels: (n,) int64 conditioning classes (also picks per-class Gaussian seeds).
    `callback(i, x)` sees every iterate of every batch. Works in batches so memory stays bounded.
    """
    cb = None if callback is None else (lambda start, i, x: callback(i, x) if i > 0 else None)
    d = Draw(model, len(labels) if labels is not None else 0, steps, step_size, None, labels=labels, seeds=seeds,
             batch_size=batch_size, autocast=autocast, unconditional=unconditional, generator=generator)
    return torch.cat([x for _, _, x in generate_batches(d, cb)])


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
        n, (rank, world), b = len(d.labels), d.share, d.batch_size
        total = sum(min(b, n - s) for s in range(rank * b, n, world * b))
        bar = progress(total, 0, f"sampling ({d.steps} steps)", d.show_progress)
        for start, x0, x in generate_batches(d):
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


__all__ = ["BufferSampler", "Chunk", "Draw", "PGDSampler", "SAMPLERS", "SGLDSampler", "generate", "generate_batches",
           "get_sampler"]
