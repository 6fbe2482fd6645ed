"""The training methods, in one table: what each one trains (its stages, in order), how it is
named, and what its models are sampled with. Everything that depends on `cfg.method` asks here
(training/methods.py maps the stage names onto the code that runs them)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    stages: tuple[str, ...]     # the run's stages in order: "stage1", "stage2" (DAT), "jem"
    label: str                  # how tables and panels name the method's final model
    stage1_label: str           # the progress label of its stage 1 (methods with one)
    adversarial: bool           # stage 1 trains on PGD examples (False: clean cross-entropy)
    sampler: str                # the default sampler of `dualat eval` (dualat.samplers)
    replay_buffer: bool         # it trains with a replay buffer (JEM): the buffer / sgld samplers apply
    panels: tuple[str, ...]     # the checkpoints `dualat landscape` draws of a run of it


METHODS = {
    "dat": Method("dat", ("stage1", "stage2"), "DAT (EMA)", "stage 1 (AT)", True, "pgd", False, ("stage1", "ema")),
    "plain": Method("plain", ("stage1",), "plain classifier", "plain classifier", False, "pgd", False, ("ema",)),
    "jem": Method("jem", ("jem",), "JEM", "", False, "buffer", True, ("ema",)),
}
DEFAULT = "dat"  # what a run directory without a recorded method was trained with


def method_of(cfg_or_name) -> Method:
    """The Method of a config (its `method`) or of a method name."""
    name = cfg_or_name if isinstance(cfg_or_name, str) else cfg_or_name.method
    return METHODS[name]


__all__ = ["DEFAULT", "METHODS", "Method", "method_of"]
