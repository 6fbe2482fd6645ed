"""`EvaluateOptions`: every setting of `evaluate()` / `dualat eval` as one object, resolved once:
which families run, on how many test images, where and in what arithmetic, and each family's own
option object (evaluate/options.py). The CLI builds it; `evaluate()` takes it or flat keywords."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .options import split_options


@dataclass
class EvaluateOptions:
    checkpoint: str = "ema"
    robust: bool = True                 # the families that run
    generative: bool = True
    ood: bool = True
    calibrate: bool = True
    counterfactuals: bool = False       # opt-in: the counterfactual family (evaluate/counterfactuals.py)
    n: int | None = None                # test images (None = all)
    device: object = None               # default: cuda when available, else cpu
    show_progress: bool = True
    amp: object = None                  # None (the run's own), False, True or "auto"
    family: dict = field(default_factory=lambda: split_options({}))  # family name -> its option object

    @classmethod
    def of(cls, checkpoint: str = "ema", **settings) -> "EvaluateOptions":
        """From flat keywords: this object's fields, and the families' fields (pgd_steps=20,
        n_samples=500, ...) sorted into their option objects (an unknown keyword: TypeError)."""
        own = {f.name for f in dataclasses.fields(cls)} - {"checkpoint", "family"}
        mine = {k: settings.pop(k) for k in list(settings) if k in own}
        return cls(checkpoint=checkpoint, family=split_options(settings), **mine)


__all__ = ["EvaluateOptions"]
