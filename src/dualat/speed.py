"""Process-level speed settings that training and sampling apply: the CPU allocator and torch.compile.

Why the allocator matters (docs/performance.md, section g): glibc serves a buffer above its
mmap threshold (which it raises by itself to at most 32 MiB) straight from mmap and gives it
back to the kernel on free, so every pass that needs such buffers page-faults all of their
pages again. A batch of 384 small-CNN activations (the fused DAT training pass) or 128
PreAct-ResNet-18 activations is above that ceiling (part of why bigger batches can run slower
per image on CPU). `keep_large_buffers()` keeps buffers below 1 GiB in the heap and
stops trimming it; freed memory then stays with the process for reuse (the peak is unchanged,
RSS just does not shrink back afterwards).

Compiled forwards live in a registry keyed by the module, not on the module, so `copy.deepcopy`
(the EMA), `state_dict` and checkpoints never see them; `forward_of(model)` is what the PGD
engine and the DAT step call.
"""
from __future__ import annotations

import ctypes
import shutil
import sys
import warnings

from .errors import DualatError

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_THRESHOLD = 1 << 30              # buffers below 1 GiB come from the heap
NO_TRIM = (1 << 31) - 1               # never give the heap's top back to the kernel
GLIBC_STEADY_STATE = (32 << 20, 64 << 20)  # glibc's own dynamic thresholds at their ceiling

_allocator = {"setting": "glibc default"}
_COMPILED: dict[int, tuple[object, object]] = {}  # id(module) -> (module, compiled callable)


def _mallopt():
    """glibc's mallopt, or None (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return None


def set_malloc_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    """Set glibc's mmap and trim thresholds (bytes); False where there is no glibc."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))


def keep_large_buffers() -> bool:
    """Keep tensor buffers below 1 GiB in the heap and never trim it (see the module docstring).

    Process-wide; `dualat train`, the CLI and the benchmark call it for CPU work. Returns True
    when applied (Linux with glibc), False elsewhere (nothing changes there).
    """
    ok = set_malloc_thresholds(KEEP_THRESHOLD, NO_TRIM)
    if ok:
        _allocator["setting"] = "heap below 1 GiB, no trim"
    return ok


def glibc_steady_state() -> bool:
    """Undo `keep_large_buffers` as far as glibc allows: mmap above 32 MiB, trim above 64 MiB,
    the thresholds glibc's own dynamic adjustment ends at (it cannot be switched back on).
    """
    ok = set_malloc_thresholds(*GLIBC_STEADY_STATE)
    if ok:
        _allocator["setting"] = "glibc default (mmap above 32 MiB)"
    return ok


def allocator_setting() -> str:
    return _allocator["setting"]


def _cxx_compiler() -> str | None:
    for name in ("g++", "c++", "clang++"):
        if shutil.which(name):
            return name
    return None


def compile_model(model, device="cpu") -> bool:
    """Register a torch.compile'd forward for `model`; the model object itself is unchanged.

    On CPU TorchInductor needs a C++ compiler; without one (or when a probe compile fails)
    this warns in one line and the model keeps running eagerly. Returns True when compiled.
    """
    import torch  # here, so that `dualat --help` does not pay for importing torch
    if not hasattr(torch, "compile"):
        raise DualatError("model.compile=true needs torch >= 2.0; upgrade torch or set model.compile=false")
    device = torch.device(device)
    reason = None
    if device.type == "cpu" and _cxx_compiler() is None:
        reason = "no C++ compiler (g++) found for TorchInductor on CPU; install g++"
    else:
        try:  # a tiny probe, so a broken toolchain shows up here and not mid-training
            torch.compile(lambda t: t * 2 + 1)(torch.ones(2, device=device))
        except Exception as exc:  # noqa: BLE001  any compiler failure means: run eagerly
            reason = f"a probe compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    if reason is not None:
        warnings.warn(f"model.compile=true ignored: {reason}; running eagerly", RuntimeWarning, stacklevel=2)
        return False
    _COMPILED[id(model)] = (model, torch.compile(model))
    return True


def uncompile_model(model) -> None:
    _COMPILED.pop(id(model), None)


def forward_of(model):
    """The callable to run `model` with: its compiled forward if registered, else the model."""
    entry = _COMPILED.get(id(model))
    return entry[1] if entry is not None and entry[0] is model else model


__all__ = ["allocator_setting", "compile_model", "forward_of", "glibc_steady_state", "keep_large_buffers",
           "set_malloc_thresholds", "uncompile_model"]
