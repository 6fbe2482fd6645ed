"""The run's plain metrics log (JSONL, always), optional TensorBoard, and the averages it records."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ..rundir import RunDir


class MetricLog:
    """Append-only JSONL log; each line is one record with `stage`, `iteration` and values."""

    def __init__(self, run_dir: Path, tensorboard: bool = False):
        self.path = Path(run_dir) / RunDir.METRICS
        _drop_torn_line(self.path)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:
                print("note: log.tensorboard=true but tensorboard is not installed; pip install tensorboard")

    def write(self, record: dict) -> None:
        record = {"time": round(time.time(), 3), **record}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(_clean(record)) + "\n")
        if self.writer is not None and "iteration" in record:
            step = record["iteration"]
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("time", "iteration", "stage"):
                    self.writer.add_scalar(f"stage{record.get('stage', 0)}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class NullLog:
    """The log of processes other than rank 0 under torchrun: rank 0 alone writes metrics."""

    def write(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


def _drop_torn_line(path: Path) -> None:
    """A run killed in the middle of a write can leave half a line at the end; cut it off so the
    resumed run's records start on a line of their own."""
    if not path.is_file():
        return
    with open(path, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)


def _clean(record: dict) -> dict:
    out = {}
    for k, v in record.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = str(v)  # JSON has no NaN; keep the fact, as text
        out[k] = v
    return out


class Averager:
    """Mean of each value over the iterations since the last `pop()`."""

    def __init__(self):
        self.sums, self.count = {}, 0

    def add(self, values: dict) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.count += 1

    def pop(self) -> dict:
        out = {k: v / max(self.count, 1) for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return out
