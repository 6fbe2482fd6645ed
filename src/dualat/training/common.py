"""Pieces every training loop shares: EMA, the step curriculum, RNG state, divergence."""
from __future__ import annotations

import contextlib
import copy
import math
import random

import numpy as np
import torch

from ..errors import DualatError


class Diverged(Exception):
    """A loss or parameter became non-finite or exceeded its bound. `summary`: what the stage had
    done (set by a stage that reports its work even when it stops this way)."""

    def __init__(self, stage: int | str, iteration: int, values: dict):
        self.stage, self.iteration, self.values, self.summary = stage, iteration, values, None
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if isinstance(v, float))
        name = "JEM" if stage == "jem" else f"stage {stage}"
        super().__init__(f"{name} diverged at iteration {iteration} ({shown})")

    @property
    def section(self) -> str:
        """The config section of the diverging stage: 'stage1', 'stage2' or 'jem'."""
        return "jem" if self.stage == "jem" else f"stage{self.stage}"


def check_finite(stage: int | str, iteration: int, values: dict, bound: float, every: bool = False) -> dict:
    """The one divergence check, made on a step's host metrics before its optimiser step: raise
    Diverged when any loss in `values` (every value with `every`: JEM's energies too) is NaN/inf
    or beyond `bound` in magnitude; else return `values`."""
    for key, v in values.items():
        if every or key.startswith("loss") or key in ("bce", "ce"):
            if not math.isfinite(v) or abs(v) > bound:
                raise Diverged(stage, iteration, values)
    return values


def parameters_finite(model: torch.nn.Module) -> bool:
    """True when no parameter holds NaN/inf (one device sync, however many tensors)."""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


class EMA:
    """Exponential moving average of weights, with the warm-up min(decay, (1+n)/(10+n)).

    Buffers (BatchNorm statistics) are copied, not averaged. `model` is a frozen eval-mode copy.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_p = list(self.model.parameters())
        new_p = [p.detach() for p in model.parameters()]
        torch._foreach_mul_(ema_p, d)
        torch._foreach_add_(ema_p, new_p, alpha=1 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


class Curriculum:
    """DAT's step curriculum: raise T by one when a full window of AUCs averages >= threshold."""

    def __init__(self, t_init: int, t_max: int, threshold: float, window: int):
        self.T, self.t_max, self.threshold, self.window = t_init, t_max, threshold, window
        self.aucs: list[float] = []

    def update(self, auc: float) -> bool:
        """Record one iteration's AUC; return True when T was raised."""
        self.aucs.append(float(auc))
        if len(self.aucs) > self.window:
            self.aucs.pop(0)
        if len(self.aucs) == self.window and self.T < self.t_max and np.mean(self.aucs) >= self.threshold:
            self.T += 1
            self.aucs.clear()
            return True
        return False

    def state_dict(self) -> dict:
        return {"T": self.T, "aucs": list(self.aucs)}

    def load_state_dict(self, state: dict) -> None:
        self.T = int(state["T"])
        self.aucs = [float(a) for a in state["aucs"]]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DualatError(f"device={name} asked for, but this PyTorch sees no CUDA GPU; use device=cpu "
                          "or install a CUDA build of torch (see README)")
    return torch.device(name)


def rng_state() -> dict:
    """Global RNG states as tensors / plain values (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2])}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))


@contextlib.contextmanager
def isolated_rng():
    """Run a block (evaluation, probe set-up) without moving the global RNGs training draws from,
    so that where evaluations and checkpoints fall never changes the training trajectory."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


@contextlib.contextmanager
def maybe(ctx_factory):
    with ctx_factory() if ctx_factory else contextlib.nullcontext():
        yield
