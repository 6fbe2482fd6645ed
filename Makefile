# make bench: the throughput harness; rewrites docs/performance.md and docs/performance.json.
#   TTQ_RUNS="runs/a runs/b" adds the time-to-quality table of those finished runs
#   (docs/time_to_quality.md / .json; reads their logs, trains nothing).
# make bench-quick: a smoke run of the same harness (seconds; writes under /tmp, not docs/).
# make bench-ttq TTQ_RUNS="...": only the time-to-quality table.
PYTHON ?= .venv/bin/python
BENCH_ARGS ?=
TTQ_RUNS ?=
TTQ_ARGS ?=

.PHONY: bench bench-quick bench-ttq

bench:
	PYTHONPATH=src $(PYTHON) -m benchmarks.run $(BENCH_ARGS)
	@if [ -n "$(TTQ_RUNS)" ]; then $(MAKE) --no-print-directory bench-ttq; fi

bench-quick:
	PYTHONPATH=src $(PYTHON) -m benchmarks.run --quick --json /tmp/dualat-bench.json --md /tmp/dualat-bench.md

bench-ttq:
	@if [ -z "$(TTQ_RUNS)" ]; then echo 'give the run directories: make bench-ttq TTQ_RUNS="runs/a runs/b"'; exit 2; fi
	PYTHONPATH=src $(PYTHON) -m benchmarks.time_to_quality $(TTQ_RUNS) $(TTQ_ARGS) \
		--md docs/time_to_quality.md --json docs/time_to_quality.json
