"""`python -m benchmarks.run`: what one DAT iteration costs, against what the machine can do.

For each model, in ONE process (docs/performance.md explains every number):
  (a) the library's DAT step (training.steps.dat_step as `dualat train` runs it), T and the preset's K;
  (b) the straightforward step (train.reference), interleaved with (a): A B A B ...;
  (c) the limit: best input-gradient pass and training pass at batch B, the pass bound
      (T + K) x input-gradient pass + 3 x training pass (the real, contrastive and adversarial
      batches), FLOPs counted by torch against a float32 matrix multiply timed in the same rounds;
  (d) sampling: a 30-step generation of B images, against 30 input-gradient passes;
  (e) peak memory of one step (a fresh process per variant, see memory.py);
  (f) seconds per iteration for T = 0, 10, 20, 40 with a straight-line fit;
  (g) input-gradient pass throughput against batch size, under both allocator settings;
and on CPU the library step under bf16 autocast beside the float32 one (emulated, and timed in
fewer rounds, where the CPU lacks native bf16). From finished runs (read, not trained): the
time-to-quality table (--ttq-runs) and the K table (--k-runs, finished.py); and one row per
docs/performance-*.json kept from other machines (others.py).
Writes docs/performance.json and the whole of docs/performance.md (report.py, tables.py).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from dualat import speed
from dualat.precision import cpu_flags, onednn_bf16, resolve

from . import finished, memory, others, report
from .timing import interleaved, linear_fit, matmul_job, summary
from .plain import PlainProcess
from .workload import FORMATS, SPECS, Workload

ROOT = Path(__file__).resolve().parent.parent
# default repeats and warm-up rounds per model (the ResNet's DAT step takes about a minute on
# 2 CPU cores; its single passes are warmed up anyway, which is what a warm-up is for)
ROUNDS = {"small_cnn": 5, "preact_resnet18": 2}
WARMUP = {"small_cnn": 1, "preact_resnet18": 0}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(SPECS), help=f"comma-separated, from: {', '.join(SPECS)}")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all cores)")
    p.add_argument("--T", type=int, default=10, help="contrastive PGD steps of the timed step")
    p.add_argument("--batch-size", type=int, help="default: each preset's stage2.batch_size")
    p.add_argument("--rounds", type=int, help="interleaved repeats per measurement (default: per model)")
    p.add_argument("--sample-steps", type=int, default=30)
    p.add_argument("--t-sweep", default="0,10,20,40")
    p.add_argument("--batch-sweep", default="32,64,128,256,512")
    p.add_argument("--full", action="store_true", help="also the T and batch sweeps for the ResNet (slow on CPU)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: on for cuda)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the library's model (default: on for cuda)")
    p.add_argument("--amp-variant", action=argparse.BooleanOptionalAction, default=True,
                   help="on CPU without --amp, also time the library step under bf16 autocast (on any CPU: "
                   "emulated, about 8x slower, where the CPU lacks native bf16); --no-amp-variant skips it")
    p.add_argument("--bf16-rounds", type=int, default=None,
                   help="timed rounds of the bf16 jobs (default: the model's rounds with native bf16, half of "
                   "them, at least 1, where bf16 is emulated)")
    p.add_argument("--bf16-models", default=None, help="comma-separated: time the bf16 step for these models only "
                   "(default: all of --models); the others' bf16 row says it was not measured")
    p.add_argument("--bf16-anyway", action="store_true", help="no effect: the bf16 step is now timed on every CPU")
    p.add_argument("--ttq-runs", default="", help="finished run directories, space-separated: the time-to-quality "
                   "section (benchmarks.time_to_quality; reads their logs, trains nothing)")
    p.add_argument("--ttq-args", default="", help="options for benchmarks.time_to_quality, e.g. '--fd 4.1'")
    p.add_argument("--k-runs", default="", help="'K=RUN ...', e.g. '5=runs/g06 3=runs/k3 1=runs/k1': the K table "
                   "from those finished runs and their `dualat eval` metrics.json (benchmarks.finished)")
    p.add_argument("--other-machines", default=str(ROOT / "docs"),
                   help="folder of the performance-*.json files summarised as other machines (default docs/)")
    p.add_argument("--profile", action="store_true",
                   help="also profile one library step (torch.profiler, operators by self CPU time)")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny batches and step counts, one round")
    p.add_argument("--note", default="", help="a line for the page, e.g. 'machine shared with other jobs'")
    p.add_argument("--tables-only", action="store_true",
                   help="time nothing: read --json (an earlier run's timings), re-read the finished runs of "
                        "--ttq-runs / --k-runs and the other machines' files, and rewrite --json and --md; the page "
                        "names both commands (for evaluations that finished after the timings)")
    p.add_argument("--json", default=str(ROOT / "docs" / "performance.json"))
    p.add_argument("--md", default=str(ROOT / "docs" / "performance.md"))
    a = p.parse_args(argv)
    a.models = [m.strip() for m in a.models.split(",") if m.strip()]
    a.bf16_models = a.models if a.bf16_models is None else [m.strip() for m in a.bf16_models.split(",") if m.strip()]
    unknown = [m for m in a.models + a.bf16_models if m not in SPECS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(SPECS)}")
    cuda = a.device.startswith("cuda")
    a.amp = cuda if a.amp is None else a.amp
    a.compile = cuda if a.compile is None else a.compile
    a.t_sweep = [int(t) for t in a.t_sweep.split(",")]
    a.batch_sweep = [int(b) for b in a.batch_sweep.split(",")]
    if a.bf16_rounds is not None and a.bf16_rounds < 1:
        p.error("--bf16-rounds must be at least 1 (--no-amp-variant skips the bf16 step)")
    if a.quick:
        a.batch_size, a.T, a.sample_steps = a.batch_size or 8, min(a.T, 2), min(a.sample_steps, 2)
        a.t_sweep, a.batch_sweep, a.rounds = [0, 1, 2], [4, 8], a.rounds or 1
    return a


def machine(device: torch.device, threads: int) -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()  # the one detection, dualat.precision's (torch's CPU probe, else /proc/cpuinfo)
    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device),
            "cpu_flags": {f: f in flags for f in others.FLAGS}, "amp_auto": resolve("auto", device),
            "onednn_bf16": onednn_bf16()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True)
        info["commit"] = commit.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        info["commit"] = "unknown"
    return info


def measure_model(key: str, a, device: torch.device) -> dict:
    shared = dict(batch_size=a.batch_size, max_attack_steps=2 if a.quick else None, max_batch=max(a.batch_sweep))
    wl = Workload(key, device, amp=a.amp, compile=a.compile, amp_variant=a.amp_variant and key in a.bf16_models,
                  **shared)
    plain = PlainProcess(key, device, torch.get_num_threads(), **shared)
    try:
        return _measure(key, a, device, wl, plain)
    finally:
        plain.close()


def _measure(key: str, a, device: torch.device, wl: Workload, plain: PlainProcess) -> dict:
    """Every section for one model: `wl` is this process (the library's settings), `plain` the
    straightforward side's own process (glibc untouched)."""
    rounds = a.rounds or ROUNDS[key]
    warm = 0 if a.quick else WARMUP[key]
    T, B, K = a.T, wl.B, wl.K
    lib_fmt = wl.lib_format_name
    out = {"title": wl.spec.title, "batch_size": B, "T": T, "K": K, "library_format": lib_fmt,
           "compiled": wl.compiled, "amp": a.amp, "rounds": rounds, "warmup_rounds": warm}
    print(f"[{key}] B={B} T={T} K={K} format={lib_fmt} rounds={rounds}", flush=True)

    # (a) (b) (c): the steps, the single passes and a matmul, all interleaved in the same rounds
    mm, mm_flops = matmul_job(device, torch.bfloat16 if a.amp else torch.float32)
    jobs = {"lib_step": wl.lib_step(T), "ref_step": plain.job("ref_step", T), "matmul": mm}
    for fmt in FORMATS:  # 'kept': here, with keep_large_buffers; 'glibc': in the plain process
        for kind in ("input_grad", "train"):
            jobs[f"{kind}/{fmt}/kept"] = getattr(wl, f"{kind}_pass")(fmt, B)
            jobs[f"{kind}/{fmt}/glibc"] = plain.job(f"{kind}_pass", fmt, B)
    jobs["train3/lib"] = wl.train_pass(lib_fmt, 3 * B)
    # thread setting: the library's input-gradient pass with the other thread count (1 <-> all cores)
    threads, other = torch.get_num_threads(), 1 if torch.get_num_threads() > 1 else os.cpu_count() or 1
    if other != threads:
        jobs["input_grad/other_threads"] = with_threads(other, wl.input_grad_pass(lib_fmt, B))
    limit = {}
    if wl.amp_variant:
        jobs["lib_amp_step"] = wl.lib_step(T, amp=True)
        jobs["input_grad/amp"] = wl.input_grad_pass("amp", B)
        jobs["train/amp"] = wl.train_pass("amp", B)
        # emulated bf16 (no native instructions) multiplies about 30x slower: a smaller matrix there
        mm_bf16_job, mm_bf16_flops = matmul_job(device, torch.bfloat16,
                                                n=2048 if wl.amp_native else 256 if a.quick else 1024)
        jobs["matmul_bf16"] = mm_bf16_job
        bf16_rounds = a.bf16_rounds or (rounds if wl.amp_native else max(1, rounds // 2))
        limit = {k: min(rounds, bf16_rounds) for k in ("lib_amp_step", "input_grad/amp", "train/amp", "matmul_bf16")}
    for name, fn in jobs.items():
        if not name.endswith("_step"):  # the steps (float32 and bf16 alike) get the warm-up rounds only
            fn()  # warm-up of every single pass (oneDNN builds its kernels on first use)
    times = {k: summary(v) for k, v in interleaved(jobs, rounds, device, warm, limit).items()}
    out["times"] = times
    flops = wl.pass_flops()
    out["flops"] = flops
    # the float32 limit: best over memory formats and allocator settings (amp has its own below)
    ig = min(v["best"] for k, v in times.items() if k.startswith("input_grad/") and k != "input_grad/amp")
    tr = min(v["best"] for k, v in times.items() if k.startswith("train/") and k != "train/amp")
    bound = (T + K) * ig + 3 * tr
    step_flops = (T + K) * flops["input_grad_pass"] + 3 * flops["train_pass"]
    lib_t, ref_t = times["lib_step"]["best"], times["ref_step"]["best"]
    mm_gflops = mm_flops / times["matmul"]["best"] / 1e9
    out["limit"] = {
        "input_grad_pass_s": ig, "train_pass_s": tr, "pass_bound_s": bound,
        "pass_bound_formula": f"({T} + {K}) x {ig:.4f} + 3 x {tr:.4f}",
        "lib_fraction_of_bound": bound / lib_t, "ref_fraction_of_bound": bound / ref_t,
        "step_flops": step_flops, "ref_extra_flops": 2 * flops["forward"],
        "lib_gflops": step_flops / lib_t / 1e9, "ref_gflops": step_flops / ref_t / 1e9,
        "matmul_gflops": mm_gflops, "matmul_dtype": "bfloat16" if a.amp else "float32",
        "input_grad_pass_gflops": flops["input_grad_pass"] / ig / 1e9,
        "train_pass_gflops": flops["train_pass"] / tr / 1e9,
    }
    if other != threads:
        out["threads"] = {"threads": threads, "input_grad_pass_s": times[f"input_grad/{lib_fmt}/kept"]["best"],
                          "other_threads": other, "other_input_grad_pass_s": times["input_grad/other_threads"]["best"],
                          "median_s": times[f"input_grad/{lib_fmt}/kept"]["median"],
                          "other_median_s": times["input_grad/other_threads"]["median"]}
    out["step"] = {"lib_s_per_it": lib_t, "ref_s_per_it": ref_t, "lib_images_per_s": B / lib_t,
                   "ref_images_per_s": B / ref_t, "speedup_best": ref_t / lib_t,
                   "speedup_median": times["ref_step"]["median"] / times["lib_step"]["median"]}
    if wl.amp_variant:
        amp_t = times["lib_amp_step"]["best"]
        ig_a, tr_a = times["input_grad/amp"]["best"], times["train/amp"]["best"]
        bound_a = (T + K) * ig_a + 3 * tr_a
        mm_bf16 = mm_bf16_flops / times["matmul_bf16"]["best"] / 1e9
        out["amp_variant"] = {"s_per_it": amp_t, "images_per_s": B / amp_t, "speedup_over_ref": ref_t / amp_t,
                              "speedup_over_lib": lib_t / amp_t, "input_grad_pass_s": ig_a, "train_pass_s": tr_a,
                              "pass_bound_s": bound_a, "fraction_of_bound": bound_a / amp_t,
                              "gflops": step_flops / amp_t / 1e9, "matmul_bf16_gflops": mm_bf16,
                              "native_bf16": wl.amp_native, "rounds": len(times["lib_amp_step"]["all"])}
        print(f"[{key}] library with amp=true (CPU bf16) {amp_t:.3f} s/it, x{ref_t / amp_t:.2f} over reference",
              flush=True)
    print(f"[{key}] library {lib_t:.3f} s/it, reference {ref_t:.3f} s/it, x{ref_t / lib_t:.2f}; "
          f"bound {bound:.3f} s -> {bound / lib_t:.2f} of it", flush=True)

    if a.profile:  # after the timings, so the profiler's overhead touches none of them
        from .profile import profile_step
        dtype = "bfloat16" if wl.autocast is not None else "float32"  # what --amp resolved to
        out["profile"] = {dtype: profile_step(wl.lib_step(T), device=device)}
        if wl.amp_variant:
            out["profile"]["bfloat16"] = profile_step(wl.lib_step(T, amp=True), device=device)

    # (d) sampling
    s_rounds = rounds if key == "small_cnn" or a.quick else 1
    st = interleaved({"lib": wl.sample("lib", a.sample_steps), "ref": plain.job("sample", "ref", a.sample_steps)},
                     s_rounds, device, 0)
    s_bound = a.sample_steps * ig
    out["sampling"] = {"steps": a.sample_steps, "images": B, "rounds": s_rounds,
                       "lib": summary(st["lib"]), "ref": summary(st["ref"]),
                       "lib_images_per_s": B / min(st["lib"]), "ref_images_per_s": B / min(st["ref"]),
                       "bound_s": s_bound, "lib_fraction_of_bound": s_bound / min(st["lib"]),
                       "ref_fraction_of_bound": s_bound / min(st["ref"]),
                       "lib_gflops": a.sample_steps * flops["input_grad_pass"] / min(st["lib"]) / 1e9}

    # (e) peak memory, each variant in a fresh process (in this one for --quick: a smoke run)
    if a.quick:
        out["memory"] = {v: {**memory.measure(wl, v), "in_process": True} for v in ("lib", "ref")}
    else:
        out["memory"] = {v: peak_memory(key, v, a, B) for v in ("lib", "ref")}

    # (f) T sweep, (g) batch sweep
    slow = key != "small_cnn" and not (a.full or a.quick)
    if not slow:
        sw = interleaved({T_: wl.lib_step(T_) for T_ in a.t_sweep}, rounds if a.quick else max(2, rounds - 2),
                         device, 0)
        out["t_sweep"] = {"T": a.t_sweep, "best_s": [min(sw[t]) for t in a.t_sweep],
                          "median_s": [summary(sw[t])["median"] for t in a.t_sweep]}
        out["t_sweep"]["fit"] = linear_fit(a.t_sweep, out["t_sweep"]["best_s"])
        bjobs = {}
        for b in a.batch_sweep:
            bjobs[(b, False)] = plain.job("input_grad_pass", lib_fmt, b)
            bjobs[(b, True)] = wl.input_grad_pass(lib_fmt, b)
        bs = interleaved(bjobs, rounds if a.quick else max(2, rounds - 2), device, warm)
        out["batch_sweep"] = {"format": lib_fmt, "rows": [
            {"batch": b, "allocator": "kept" if keep else "glibc", "best_s": min(t),
             "images_per_s": b / min(t)} for (b, keep), t in bs.items()]}
    else:
        out["t_sweep"] = out["batch_sweep"] = None
    return out


def with_threads(n: int, fn):
    """fn run with n torch threads, the process's setting restored afterwards."""
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            fn()
        finally:
            torch.set_num_threads(before)
    return run


def peak_memory(key: str, variant: str, a, batch: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.memory", key, variant, a.device, "--batch-size", str(batch)]
    cmd += (["--amp"] if a.amp else []) + (["--compile"] if a.compile else [])
    cmd += ["--threads", str(torch.get_num_threads())]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def tables_only(a, argv_text: str) -> dict:
    """--tables-only: the timings of an earlier run (a.json) with the finished-run tables read now."""
    try:
        result = json.loads(Path(a.json).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"benchmarks: --tables-only needs the timings of an earlier run in --json: {exc}") from None
    result.update({"time_to_quality": finished.time_to_quality(a.ttq_runs, a.ttq_args),
                   "k_runs": finished.k_table(a.k_runs), "other_machines": others.rows(Path(a.other_machines), Path(a.md)),
                   "tables_read": {"command": f"python -m benchmarks.run {argv_text}".strip(),
                                   "date": datetime.datetime.now().isoformat(timespec="seconds")}})
    Path(a.json).write_text(json.dumps(result, indent=1))
    Path(a.md).write_text(report.markdown(result, Path(a.json)))
    print(f"rewrote the finished-run tables of {a.json} and {a.md}")
    return result


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.tables_only:
        return tables_only(a, shlex.join(sys.argv[1:] if argv is None else argv))
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks: --device cuda asked for, but this torch sees no CUDA GPU")
    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    tuned = speed.keep_large_buffers() if device.type == "cpu" else False
    argv_text = shlex.join(sys.argv[1:] if argv is None else argv)
    start = datetime.datetime.now()
    result = {"command": f"python -m benchmarks.run {argv_text}".strip(), "date": start.isoformat(timespec="seconds"),
              "note": a.note, "machine": {**machine(device, threads), "allocator_tuning": tuned}, "load_average_start": os.getloadavg(),
              "quick": a.quick, "models": {},
              # read before the timings, so that a mistyped run directory fails at once
              "time_to_quality": finished.time_to_quality(a.ttq_runs, a.ttq_args), "k_runs": finished.k_table(a.k_runs),
              "other_machines": others.rows(Path(a.other_machines), Path(a.md))}
    for key in a.models:
        result["models"][key] = measure_model(key, a, device)
    result["load_average_end"] = os.getloadavg()
    result["wall_s"] = (datetime.datetime.now() - start).total_seconds()
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=1))
    Path(a.md).write_text(report.markdown(result, Path(a.json)))
    print(f"wrote {a.json} and {a.md} ({result['wall_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
