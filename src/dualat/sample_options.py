"""The settings of `sample` / `sample_to_dir` / `dualat sample` as one object (the CLI builds it;
the Python API takes it or its fields as keywords), and `Opened`: a model opened for sampling."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SampleOptions:
    """Every setting of `sample` / `sample_to_dir` / `dualat sample` (see `sample` for each)."""
    n: int = 100
    classes: list[int] | None = None
    steps: int | None = None
    step_size: float | None = None
    seeds: object = None                # None, a seed-source name, a SeedSource or a tensor
    unconditional: bool = False
    seed: int = 0
    checkpoint: str = "ema"
    batch_size: int = 256
    shape: tuple | None = None          # (C, H, W) of a bare module's inputs
    device: object = None               # where a run's model is opened
    show_progress: bool = False
    amp: object = None                  # None (the run's own), False, True or "auto"
    png: bool = False                   # sample_to_dir: png/<index>_y<class>.png per sample
    trajectory: int | None = None       # sample_to_dir: trajectory.png every K steps
    command: list[str] | None = None    # sample_to_dir: the command line recorded in sample.json


def options_of(options: SampleOptions | None, settings: dict, **defaults) -> SampleOptions:
    """`options`, or a SampleOptions of the keyword `settings` (over `defaults`); not both."""
    if options is not None and settings:
        raise TypeError(f"give SampleOptions or keywords, not both (got {sorted(settings)[0]!r} beside options)")
    return options if options is not None else SampleOptions(**{**defaults, **settings})


@dataclass
class Opened:
    """A model opened for sampling, with the defaults filled in: cfg / info are None for a bare
    module; k = its number of classes; seeds = the seed source (or tensor) to draw from."""
    model: torch.nn.Module
    cfg: object
    info: dict | None
    shape: tuple
    k: int
    steps: int
    step_size: float
    seeds: object


__all__ = ["Opened", "SampleOptions", "options_of"]
