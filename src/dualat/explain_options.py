"""The settings of `explain_to_dir` / `dualat explain` as one object (the CLI builds it; the Python
API takes it or its fields as keywords), and the counterfactual search's defaults."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_STEPS = 300
# Measured on a digits DAT model (12 test images toward class y+3, radii 0.5..3, 300 steps): a step
# of 5 x radius / steps ends higher than 2.5 x (mean p at r=1: 0.20 vs 0.18; r=1.5: 0.91 vs 0.89)
# and as high as 10 x; momentum 0.9 was no better than none (0.90 vs 0.91), so it is off by
# default and stays available. With 5 x the iterate can cross its ball 2.5 times: it reaches the
# sphere early, then slides along it.
DEFAULT_MOMENTUM = 0.0
STEP_FACTOR = 5.0


@dataclass
class ExplainOptions:
    """Every setting of `explain_to_dir` (see it and `explain` for each)."""
    target: str | None = None           # class indices, true, predicted, all (default true,predicted)
    radii: list[float] | None = None    # default: default_radii of the run
    steps: int = DEFAULT_STEPS
    n: int = 10                         # images of --images misclassified
    checkpoint: str = "ema"
    step_factor: float = STEP_FACTOR
    momentum: float = DEFAULT_MOMENTUM
    batch_size: int = 256
    device: object = None
    show_progress: bool = True
    amp: object = None                  # None (the run's own), False, True or "auto"
    command: list[str] | None = None    # the command line recorded in explain.json


__all__ = ["DEFAULT_MOMENTUM", "DEFAULT_STEPS", "ExplainOptions", "STEP_FACTOR"]
