"""The straightforward side in a process of its own, as a plain script runs: glibc's allocator untouched.

The allocator is per process and stateful (what one job frees, the next reuses or re-faults), so
switching its settings back and forth inside one process would charge each side for the other's
heap. Instead the harness starts this worker (spawn), which builds the same Workload (same seed:
same weights and inputs) and times the jobs it is sent; the harness alternates between its own
jobs and the worker's (A B A B ...), only one process working at a time.
"""
from __future__ import annotations

import multiprocessing as mp

import torch

from .timing import clock


def _serve(conn, key: str, device: str, threads: int, kwargs: dict) -> None:
    from .workload import Workload
    torch.set_num_threads(threads)
    wl = Workload(key, torch.device(device), **kwargs)
    jobs = {}
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        if msg not in jobs:  # ('ref_step', (T,)), ('input_grad_pass', (fmt, batch)), ...
            method, args = msg
            jobs[msg] = getattr(wl, method)(*args)
        conn.send(clock(jobs[msg], wl.device))


class PlainProcess:
    """A worker holding the straightforward side; `job(method, *args)` is a timed remote call."""

    def __init__(self, key: str, device: torch.device, threads: int, **workload_kwargs):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, key, str(device), threads, workload_kwargs),
                                daemon=True)
        self.proc.start()
        if self.conn.recv() != "ready":
            raise RuntimeError("the plain-script benchmark worker did not start")

    def job(self, method: str, *args):
        """A callable that runs Workload.method(*args)() in the worker and returns its seconds."""
        def run() -> float:
            self.conn.send((method, args))
            return self.conn.recv()
        run.remote = True
        return run

    def close(self) -> None:
        if self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(timeout=60)
        self.conn.close()
