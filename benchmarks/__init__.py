"""Throughput harness for dualat: `python -m benchmarks.run` (or `make bench`) writes docs/performance.md.

timing.py: clocks, interleaved repeats, matrix-multiply GFLOP/s, FLOP counting;
workload.py: the two models' DAT steps (library and straightforward) and single passes;
memory.py: peak memory of one step in a fresh process; report.py: the markdown page, with
tables.py for its sections read from elsewhere: finished.py (the K table's finished runs),
time_to_quality.py (time to quality from a run's log), others.py (kept files of other machines).
"""
