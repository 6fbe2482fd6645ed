"""Which arithmetic a run computes in: the `amp` setting resolved against the device.

    amp: false  -> float32 everywhere
    amp: true   -> bf16 autocast on CUDA, or on a CPU where oneDNN reports bf16 support; elsewhere
                   float32 with a warning (bf16 emulated in software is slower than float32)
    amp: auto   -> bf16 autocast on CUDA GPUs with bf16 and on CPUs with native bf16 instructions
                   (AVX512-BF16 or AMX-BF16); float32 elsewhere, silently

What stays float32 under autocast, and why (tests/test_precision.py checks each):
- the energies and the BCE / cross-entropy: the logits are cast with `.float()` before
  logsumexp, so the 8-bit mantissa of bf16 never reaches the loss or the AUC scores;
- the PGD step: the objective is taken on float32 logits; the gradient w.r.t. the float32 input
  is float32, and its per-sample normalisation, the step and the projection run outside the
  autocast region (dualat.pgd);
- the EMA: its weights are float32 copies, averaged outside autocast;
- the metrics (accuracies are counts; FD, AUROC and calibration are computed from float32
  features / scores), and AutoAttack, which evaluation always runs in float32.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from .errors import DualatError

FLOAT32, BF16 = "float32", "bfloat16"
AMP_CHOICES = (False, True, "auto")


def cpu_flags() -> set[str]:
    """The CPU's instruction-set flags that matter for bf16: from torch's own CPU probe when it
    has one (torch >= 2.3), else from /proc/cpuinfo (Linux); empty where neither answers."""
    import torch
    try:
        caps = torch.cpu.get_capabilities()
        return {k for k, v in caps.items() if v is True}
    except (AttributeError, RuntimeError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX-BF16): only then is bf16
    autocast faster than float32 on CPU (docs/performance.md)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def onednn_bf16() -> bool:
    """Whether oneDNN reports bf16 kernels on this CPU (what `amp: true` has always checked;
    it also says yes on AVX512 CPUs that emulate bf16)."""
    import torch
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_bf16(device) -> bool:
    import torch
    try:
        return bool(torch.cuda.is_bf16_supported())
    except (AttributeError, RuntimeError, AssertionError):
        return False


def resolve(amp, device) -> str:
    """The dtype name ("float32" or "bfloat16") that `amp` (False | True | "auto") means on `device`."""
    import torch
    device = torch.device(device)
    if amp is False or amp is None:
        return FLOAT32
    if amp == "auto":
        if device.type == "cuda":
            return BF16 if cuda_bf16(device) else FLOAT32
        return BF16 if device.type == "cpu" and cpu_native_bf16() else FLOAT32
    if amp is not True:
        raise DualatError(f"amp must be true, false or auto, got {amp!r}")
    if device.type == "cuda":
        return BF16
    if device.type == "cpu" and onednn_bf16():
        return BF16
    warnings.warn("amp=true ignored: this CPU has no native bf16 (AVX512-BF16 / AMX), where bf16 would "
                  "be slower than float32; running in float32", RuntimeWarning, stacklevel=3)
    return FLOAT32


def autocast_for(dtype: str, device):
    """A context-manager factory for autocast in `dtype` on `device`, or None for float32."""
    import torch
    if dtype == FLOAT32:
        return None
    kind = torch.device(device).type
    return lambda: torch.autocast(kind, dtype=torch.bfloat16)


def precision(amp, device) -> tuple[str, object]:
    """(dtype name, autocast factory or None) for `amp` on `device`."""
    dtype = resolve(amp, device)
    return dtype, autocast_for(dtype, device)


__all__ = ["AMP_CHOICES", "BF16", "FLOAT32", "autocast_for", "cpu_flags", "cpu_native_bf16", "onednn_bf16",
           "precision", "resolve"]
