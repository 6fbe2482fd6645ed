"""The files of a run directory, each name spelled once here (every reader and writer asks RunDir).

    config.yaml                the config snapshot          metrics.jsonl   the log
    last.pt                    the resumable state          summary.json    the finished run's numbers
    stage1.pt                  stage 1's weights + eval     diverged.json   a divergence record
    model_ema.safetensors      DAT's EMA weights            best_fid.pt / best_robust.pt  best-of weights
    model.safetensors          JEM's weights                replay_buffer.safetensors     JEM's buffer
    sample_steps.json          the sampler's steps chosen at the end of stage 2 (evaluate/stepchoice.py)
"""
from __future__ import annotations

from pathlib import Path


class RunDir:
    CONFIG = "config.yaml"
    STATE = "last.pt"
    STAGE1 = "stage1.pt"
    EMA_WEIGHTS = "model_ema.safetensors"
    WEIGHTS = "model.safetensors"
    BUFFER = "replay_buffer.safetensors"
    BEST_FD = "best_fid.pt"
    BEST_ROBUST = "best_robust.pt"
    SUMMARY = "summary.json"
    DIVERGED = "diverged.json"
    METRICS = "metrics.jsonl"
    SAMPLE_STEPS = "sample_steps.json"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def holds_run(self) -> bool:
        """Whether a `dualat train` run has started here (a snapshot or a checkpoint exists)."""
        return (self.path / self.CONFIG).exists() or (self.path / self.STATE).exists()
