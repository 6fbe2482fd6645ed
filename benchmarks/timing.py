"""Clocks for the harness: interleaved repeats, best / median, matmul GFLOP/s, FLOP counts."""
from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(fn, device: torch.device) -> float:
    """Seconds one call of fn() takes, the device's queued work included."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def interleaved(jobs: dict, rounds: int, device: torch.device, warmup: int = 1, limit: dict | None = None) -> dict:
    """Run every job once per round, in turn (A B C A B C ...), so machine noise hits all alike.

    jobs: name -> fn(); a fn with `remote = True` (plain.py) times itself in its own process and
    returns its seconds. limit: name -> at most this many timed rounds (and warm-ups) for a slow
    job, which then runs in the first rounds only. Returns name -> list of seconds (warm-up calls
    not included).
    """
    limit = limit or {}
    for w in range(warmup):
        for name, fn in jobs.items():
            if w < limit.get(name, warmup):
                fn()
    times = {name: [] for name in jobs}
    for r in range(rounds):
        for name, fn in jobs.items():
            if r < limit.get(name, rounds):
                times[name].append(fn() if getattr(fn, "remote", False) else clock(fn, device))
    return times


def summary(times: list[float]) -> dict:
    """best, median and every repeat, in seconds."""
    return {"best": min(times), "median": statistics.median(times), "all": [round(t, 6) for t in times]}


def matmul_job(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048):
    """(fn, flops): one n x n x n matrix multiply; flops = 2 n^3."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return (lambda: torch.mm(a, b)), 2 * n ** 3


def count_flops(fn) -> int:
    """FLOPs of fn() as torch's FlopCounterMode counts them (matmuls and convolutions, backward too).

    fn must use .backward(), not torch.autograd.grad, which the counter does not support.
    """
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def linear_fit(xs: list[float], ys: list[float]) -> dict:
    """Least-squares y = intercept + slope x, with R^2 and the largest residual relative to y."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else 0.0
    intercept = my - slope * mx
    res = [y - (intercept + slope * x) for x, y in zip(xs, ys)]
    ss_tot = sum((y - my) ** 2 for y in ys)
    r2 = 1 - sum(r * r for r in res) / ss_tot if ss_tot > 0 else 1.0
    return {"intercept_s": intercept, "slope_s_per_T": slope, "r2": r2,
            "max_rel_residual": max(abs(r) / y for r, y in zip(res, ys))}
