"""Peak memory of one DAT step, measured in a fresh process so nothing earlier in the run counts.

    python -m benchmarks.memory MODEL lib|ref DEVICE [--batch-size N] [--amp] [--compile]

prints one JSON line. CPU: resident set size (RSS) before the step and its high-water mark
(VmHWM in /proc/self/status, reset just before the step; not getrusage's ru_maxrss, which a
child inherits from the parent's RSS at fork). CUDA: torch.cuda.max_memory_allocated.
The step runs with T = 1 and K = 1: PGD frees each step's graph, so more steps need no more memory.
'lib' runs with `speed.keep_large_buffers` (as `dualat train` does), 'ref' with glibc untouched.
"""
from __future__ import annotations

import argparse
import json
import os
import resource

import torch

from dualat import speed


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's RSS high-water mark (Linux VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Start VmHWM afresh from the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("variant", choices=["lib", "ref"])
    p.add_argument("device")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--threads", type=int)
    a = p.parse_args(argv)
    from .workload import Workload
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    lib = a.variant == "lib"
    if lib and device.type == "cpu":
        speed.keep_large_buffers()
    wl = Workload(a.model, device, a.batch_size, amp=a.amp and lib, compile=a.compile and lib, max_attack_steps=1)
    print(json.dumps(measure(wl, a.variant)))


def measure(wl, variant: str) -> dict:
    """Memory before and at the peak of one step (T = 1) of `variant` ('lib' or 'ref') of workload wl."""
    step = wl.lib_step(1) if variant == "lib" else wl.ref_step(1)
    if wl.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        out = {"what": "torch.cuda.max_memory_allocated", "before_bytes": before,
               "peak_bytes": torch.cuda.max_memory_allocated()}
    else:
        reset = reset_peak_rss()
        before = rss_bytes()
        step()
        out = {"what": "RSS (VmHWM" + (", reset before the step)" if reset else ")"), "before_bytes": before,
               "peak_bytes": peak_rss_bytes()}
    out["step_bytes"] = out["peak_bytes"] - out["before_bytes"]
    return out


if __name__ == "__main__":
    main()
