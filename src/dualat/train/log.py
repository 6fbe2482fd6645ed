"""The run's plain metrics log (JSONL, always), optional TensorBoard, and the progress bar."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from tqdm.auto import tqdm


class MetricLog:
    """Append-only JSONL log; each line is one record with `stage`, `iteration` and values."""

    def __init__(self, run_dir: Path, tensorboard: bool = False):
        self.path = Path(run_dir) / "metrics.jsonl"
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


def read_log(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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


def code_versions(records: list[dict]) -> list[str | None]:
    """The distinct code versions ("dualat V at COMMIT") a log's start/resume events name, in order;
    None for events written before logs recorded their code."""
    out: list[str | None] = []
    for r in records:
        if r.get("event") in ("start", "resume"):
            v = f"dualat {r['dualat']}" + (f" at {r['commit']}" if r.get("commit") else "") if r.get("dualat") else None
            if v not in out:
                out.append(v)
    return out


def progress(total: int, initial: int, desc: str, enabled: bool):
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True,
                mininterval=1.0, leave=True)
