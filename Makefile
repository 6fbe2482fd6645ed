# make bench: the throughput harness (python -m benchmarks.run); rewrites docs/performance.json and
#   the WHOLE of docs/performance.md (dated; the machine, its CPU flags and what `amp: auto` picks
#   there; threads, load averages, wall time). Never edit the page by hand: rerun this.
#   On CPU it also times the library DAT step under bf16 autocast beside float32; where the CPU
#   lacks native bf16 (avx512_bf16 / amx_bf16) that is emulated, about 8x slower, and timed in
#   fewer rounds (on the 2-core AMD EPYC the ResNet's emulated bf16 step alone takes minutes);
#   BENCH_ARGS=--no-amp-variant skips it, "--bf16-models small_cnn" keeps it to the small CNN,
#   "--bf16-rounds N" sets the rounds.
#   TTQ_RUNS="runs/a runs/b" (finished runs; their logs are read, nothing is trained): the
#     time-to-quality section, with TTQ_ARGS passed to benchmarks.time_to_quality (e.g. "--fd 4.1");
#     docs/time_to_quality.md / .json are rewritten from the same runs (make bench-ttq).
#   K_RUNS="5=runs/g06 3=runs/k3 1=runs/k1" (K=RUN_DIR, finished runs of stage 2 with K attack
#     steps): the K table, from each run's config.yaml and metrics.jsonl and the metrics.json that
#     `dualat eval` wrote inside it (RUN/eval-ema by default), EMA weights; a number no file holds
#     shows as "not run". For all of it: dualat eval RUN --robust --norm L2 --autoattack
#     --generative --n-samples 2000 --ref-split test --n-ref 10000 (PGD-20 L2 on all 10,000 test
#     images, AutoAttack L2 on the first 1,000, FD / precision / recall of 2,000 samples).
#   Evaluations that end after the timings: make bench-tables TTQ_RUNS=... K_RUNS=... re-reads the
#     finished runs into the timings already in docs/performance.json (--tables-only; the page says so).
#   Other machines: one row per docs/performance-*.json (harness results kept from other days or
#     machines, or {"kind": "whole_runs"} files), linked from the page.
# make bench-quick: a smoke run of the same harness (a minute or a few on 2 shared cores; the bf16
#   step for the small CNN only; writes under /tmp, not docs/).
# make bench-ttq TTQ_RUNS="...": only the time-to-quality table (docs/time_to_quality.md / .json).
PYTHON ?= .venv/bin/python
BENCH_ARGS ?=
TTQ_RUNS ?=
TTQ_ARGS ?=
K_RUNS ?=

.PHONY: bench bench-quick bench-ttq bench-tables

bench:
	PYTHONPATH=src $(PYTHON) -m benchmarks.run $(BENCH_ARGS) \
		$(if $(strip $(TTQ_RUNS)),--ttq-runs="$(TTQ_RUNS)") $(if $(strip $(TTQ_ARGS)),--ttq-args="$(TTQ_ARGS)") \
		$(if $(strip $(K_RUNS)),--k-runs="$(K_RUNS)")
	@if [ -n "$(TTQ_RUNS)" ]; then $(MAKE) --no-print-directory bench-ttq; fi

bench-tables:
	PYTHONPATH=src $(PYTHON) -m benchmarks.run --tables-only \
		$(if $(strip $(TTQ_RUNS)),--ttq-runs="$(TTQ_RUNS)") $(if $(strip $(TTQ_ARGS)),--ttq-args="$(TTQ_ARGS)") \
		$(if $(strip $(K_RUNS)),--k-runs="$(K_RUNS)")
	@if [ -n "$(TTQ_RUNS)" ]; then $(MAKE) --no-print-directory bench-ttq; fi

bench-quick:
	PYTHONPATH=src $(PYTHON) -m benchmarks.run --quick --bf16-models small_cnn --json /tmp/dualat-bench.json \
		--md /tmp/dualat-bench.md

bench-ttq:
	@if [ -z "$(TTQ_RUNS)" ]; then echo 'give the run directories: make bench-ttq TTQ_RUNS="runs/a runs/b"'; exit 2; fi
	PYTHONPATH=src $(PYTHON) -m benchmarks.time_to_quality $(TTQ_RUNS) $(TTQ_ARGS) \
		--md docs/time_to_quality.md --json docs/time_to_quality.json
