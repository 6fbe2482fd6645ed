#!/usr/bin/env bash
# scripts/gpu_check.sh: the GPU check of issue 16, one short script (under 8 minutes on a GPU).
#   1. the benchmark harness (python -m benchmarks.run) for the small CNN and PreAct-ResNet-18 at
#      32x32-class inputs, bf16 autocast and torch.compile on, written to OUT/bench.{json,md};
#   2. a few hundred iterations (100 stage 1 + 200 stage 2 at T = 10) of the cifar10_wrn34 preset
#      on the synthetic `fake` data set (python -m benchmarks.preset_check), written to OUT/preset.json;
#   then prints images/s of the library and straightforward DAT steps, of both training stages,
#   and the peak memory. Each phase has a time limit, so the whole stays under 8 minutes.
# Usage: scripts/gpu_check.sh [--device cuda|cuda:N|cpu] [--quick] [--out DIR]
#   --quick: the same plumbing in a minute or so on a CPU (tests/test_gpu_check.py): the harness's
#   --quick mode for the small CNN only, and 2 + 2 preset iterations with a WRN-10-1 for the WRN-34-10;
#   on CPU amp, compile and the bf16 step are off (bf16 is emulated on most CPUs; inductor needs minutes).
# PYTHON=... picks the interpreter (default .venv/bin/python when present, else python).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda QUICK="" OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="${2:?--device needs a value}"; shift 2 ;;
    --quick) QUICK=--quick; shift ;;
    --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
    -h|--help) sed -n 2,14p "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (use --device cuda|cpu, --quick, --out DIR)" >&2; exit 2 ;;
  esac
done
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/dualat-gpu-check.XXXXXX")}"
mkdir -p "$OUT"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export DUALAT_CACHE="${DUALAT_CACHE:-$OUT/cache}"
case "$DEVICE" in
  cuda*) ACCEL=(--amp --compile); BENCH_EXTRA=(); BENCH_LIMIT=270; PRESET_LIMIT=180 ;;
  cpu) ACCEL=(--no-amp --no-compile); BENCH_EXTRA=(--no-amp-variant); BENCH_LIMIT=270; PRESET_LIMIT=180 ;;
  *) echo "gpu_check.sh: --device must be cuda, cuda:N or cpu, got $DEVICE" >&2; exit 2 ;;
esac
echo "gpu_check: device $DEVICE ${QUICK:+(quick) }-> $OUT"
status=0
MODELS=small_cnn,preact_resnet18
[ -n "$QUICK" ] && MODELS=small_cnn  # the quick path checks the plumbing, not the ResNet's speed
BENCH=(-m benchmarks.run --device "$DEVICE" --models "$MODELS" "${ACCEL[@]}" "${BENCH_EXTRA[@]}"
       --json "$OUT/bench.json" --md "$OUT/bench.md" --note "scripts/gpu_check.sh")
[ -n "$QUICK" ] && BENCH+=(--quick) || BENCH+=(--rounds 3)
timeout "$BENCH_LIMIT" "$PYTHON" "${BENCH[@]}" > "$OUT/bench.log" 2>&1 \
  || { echo "gpu_check: the harness failed or passed its ${BENCH_LIMIT} s limit (rc $?); see $OUT/bench.log"; status=1; }
PRESET=(-m benchmarks.preset_check --preset cifar10_wrn34 --device "$DEVICE" "${ACCEL[@]}"
        --out "$OUT/preset-run" --json "$OUT/preset.json")
[ -n "$QUICK" ] && PRESET+=(--quick)
timeout "$PRESET_LIMIT" "$PYTHON" "${PRESET[@]}" > "$OUT/preset.log" 2>&1 \
  || { echo "gpu_check: the preset run failed or passed its ${PRESET_LIMIT} s limit (rc $?); see $OUT/preset.log"; status=1; }
"$PYTHON" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
if (out / "bench.json").is_file():
    b = json.loads((out / "bench.json").read_text())
    m = b["machine"]
    print(f"harness: {m.get('gpu') or m['cpu']}, torch {m['torch']}{' (quick: not a measurement)' if b['quick'] else ''}")
    for key, r in b["models"].items():
        st, mem = r["step"], r["memory"]["lib"]
        peak = f"{mem['peak_bytes'] / 2**20:.0f} MiB ({mem['what']})" if "peak_bytes" in mem else mem.get("error", "?")
        print(f"  {key}: B={r['batch_size']} T={r['T']} K={r['K']} amp={r['amp']} compiled={r['compiled']}: library "
              f"{st['lib_images_per_s']:.1f} images/s, straightforward {st['ref_images_per_s']:.1f} images/s; "
              f"library step peak memory {peak}")
if (out / "preset.json").is_file():
    p = json.loads((out / "preset.json").read_text())
    print(f"preset {p['preset']} ({p['model']}) on fake data, {p['device']}{' ' + p['gpu'] if p['gpu'] else ''}, "
          f"{p['precision']}, compile {p['compile']}:")
    for s in (1, 2):
        r = p[f"stage{s}"]
        print(f"  stage {s}: " + (f"{r['images_per_s']:.1f} images/s ({r['s_per_iteration']:.3f} s/iteration)" if r
                                  else "too few iterations to time"))
    print(f"  peak memory {p['peak_memory']['bytes'] / 2**20:.0f} MiB ({p['peak_memory']['what']}); {p['wall_s']:.0f} s")
PY
exit $status
