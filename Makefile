# make bench: the throughput harness; rewrites docs/performance.md and docs/performance.json.
# make bench-quick: a smoke run of the same harness (seconds; writes under /tmp, not docs/).
PYTHON ?= .venv/bin/python
BENCH_ARGS ?=

.PHONY: bench bench-quick

bench:
	PYTHONPATH=src $(PYTHON) -m benchmarks.run $(BENCH_ARGS)

bench-quick:
	PYTHONPATH=src $(PYTHON) -m benchmarks.run --quick --json /tmp/dualat-bench.json --md /tmp/dualat-bench.md
