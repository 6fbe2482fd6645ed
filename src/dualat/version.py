"""Which code this is: the package version, and the git commit of a source checkout."""
from __future__ import annotations

import subprocess
import threading
from pathlib import Path

__version__ = "0.1.0"


def code_version() -> dict:
    """dualat's version, and the git commit of its source tree when it runs from a checkout (a
    modified tree is marked "+dirty"): so every log says which code produced it."""
    out = {"dualat": __version__}
    src = Path(__file__).resolve().parent
    if "site-packages" in src.parts or "dist-packages" in src.parts:  # installed, not a checkout
        return out
    try:
        code, commit = _git(src, "rev-parse", "--short=12", "HEAD")
        if code == 0:
            _, dirty = _git(src, "status", "--porcelain", "--untracked-files=no", ".")
            out["commit"] = commit.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _git(cwd: Path, *args: str, timeout: float = 5.0) -> tuple[int, str]:
    """(exit code, stdout) of a git command, killed after `timeout` seconds. A timer thread does
    the killing, so waiting for git never polls with time.sleep (which callers may have replaced)."""
    proc = subprocess.Popen(["git", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        stdout, _ = proc.communicate()
    finally:
        timer.cancel()
    return proc.returncode, stdout
