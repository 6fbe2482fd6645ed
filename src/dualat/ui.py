"""What every layer shows or reads back: the progress bar, and reading a run's metrics log.

Layer 1 (docs/guide.md, "Layout"): imports only rundir (file names), so training, evaluation, sampling and the
report all use the same bar and the same log reader.
"""
from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from .rundir import RunDir


def progress(total: int, initial: int, desc: str, enabled: bool):
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True,
                mininterval=1.0, leave=True)


def read_log(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / RunDir.METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
