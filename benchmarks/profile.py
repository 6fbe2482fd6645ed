"""`--profile`: where one DAT step's time goes, by torch.profiler (operators by self CPU time).

Self time is the time spent in an operator itself, not in the operators it calls, so the rows
add up to the profiled total (the profiler's own overhead included; a profiled step runs slower
than a timed one, so read the shares, not the seconds).
"""
from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile


def profile_step(step, rounds: int = 1, top: int = 15, device: torch.device | None = None) -> dict:
    """Profile `rounds` calls of `step` (after one unprofiled warm-up call); the `top` operators
    by self CPU time per call, with their share of the total self CPU time."""
    step()
    activities = [ProfilerActivity.CPU]
    if device is not None and device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(rounds):
            step()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
    events = list(prof.key_averages())
    total = sum(e.self_cpu_time_total for e in events) or 1
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {"rounds": rounds, "total_self_cpu_s": total / 1e6 / rounds,
            "rows": [{"op": e.key, "self_cpu_s": e.self_cpu_time_total / 1e6 / rounds,
                      "share": e.self_cpu_time_total / total, "calls": e.count // rounds} for e in rows]}


def markdown(p: dict, title: str) -> list[str]:
    lines = [f"{title}: {p['total_self_cpu_s']:.3f} s of self CPU time per step under the profiler "
             f"({p['rounds']} profiled step(s) after a warm-up).", "",
             "| operator | self CPU s / step | share | calls / step |", "|---|---|---|---|"]
    lines += [f"| `{r['op']}` | {r['self_cpu_s']:.3f} | {100 * r['share']:.1f}% | {r['calls']} |" for r in p["rows"]]
    return lines + [""]
