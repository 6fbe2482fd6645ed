"""Claims on pieces of a long job, so that several processes can share it (`dualat study` started
twice on a 2-core machine, or once per GPU). A claim is a file created atomically (O_EXCL) that
names its owner: host, pid and the pid's start time. A claim whose owner is gone (same host, the pid
no longer runs, or runs a different process) is stale and is taken over; a claim made on another
host is trusted until its file is deleted."""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether process `pid` of this host still runs (the one check of claims and of temporary
    checkpoint files): this process always; a pid that signals ProcessLookupError never; and,
    given the start time it had (`_start_time`), only while that is still the same process."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        pass
    if started is None:
        return True
    now = _start_time(pid)
    return now is None or now == started


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True
    return process_alive(int(owner.get("pid", -1)), owner.get("started"))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid())}


@contextmanager
def claim(path: Path):
    """Yields True while this process holds the claim at `path`, False if a live process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                owner = {}
            # an empty or torn claim is being written right now, or its writer died at once
            torn = not owner and time.time() - _mtime(path) > 60
            if torn or (owner and not _alive(owner)):
                path.unlink(missing_ok=True)
                continue
            yield False
            return
        with os.fdopen(fd, "w") as f:
            json.dump(_owner(), f)
        try:
            yield True
        finally:
            path.unlink(missing_ok=True)
        return
    yield False
