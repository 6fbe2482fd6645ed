"""Atomic file writes: a temporary file in the same folder, fsync, then a rename over the target.

A kill at any moment leaves either the previous file or the new one, never half of one. The
temporary file's name holds the writer's host and pid, so a later writer can remove the ones that
killed processes left behind. checkpoint.atomic_save builds on this for tensors.
"""
from __future__ import annotations

import glob
import os
import socket
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from .worklock import process_alive


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(fh)` on a temporary binary file beside `path`, fsync it, rename it over `path`
    (and fsync the folder). Stale temporary files of the same target are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """A small text file (config snapshot, summary) written atomically: all of it or the old one."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data))


def _tmp_prefix(path: Path, pid: int | None = None) -> str:
    # the writer's host and pid are in the name, so a later writer can tell an abandoned file
    return f".{path.name}.{socket.gethostname()}.{os.getpid() if pid is None else pid}."


def remove_stale_tmp(path: str | Path) -> list[Path]:
    """Delete temporary files of `path` whose writer (a process on this host) no longer runs."""
    path = Path(path)
    host = socket.gethostname()
    removed = []
    if not path.parent.is_dir():
        return removed
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        rest = tmp.name[len(path.name) + 2:-len(".tmp")]
        parts = rest.rsplit(".", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit() or process_alive(int(parts[1])):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed
