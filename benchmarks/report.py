"""docs/performance.md from the harness's JSON: every number on the page comes from that run (or
from the finished runs and kept files it read: tables.py); nothing is edited by hand afterwards."""
from __future__ import annotations

from pathlib import Path

from . import tables

HEAD = """# Performance: what one DAT iteration costs, against the machine's limit

One DAT iteration costs about T + K input-gradient passes of a batch (the contrastive and the
adversarial PGD) plus the training passes over the real, contrastive and adversarial batches.
This page is written entirely by `{command}` (what `make bench` ran; the Makefile's header
says how) and not edited afterwards; the raw numbers are in [{json_name}]({json_name}).
"""

HOW = """## How to read it

- **Library step**: `dualat.training.steps.dat_step` as `dualat train` runs it: one fused training
  forward over [real, contrastive, adversarial] (BatchNorm is frozen in stage 2, so samples are
  independent of their batch), the AUC from the logits the loss already computed, one host
  synchronisation per step, PGD with `requires_grad` on the inputs only, the preset's memory
  format, and the CPU allocator setting `dualat.speed.keep_large_buffers` (below).
- **Straightforward step**: `dualat.training.reference.reference_dat_step`, the structure of the
  authors' released code: the same PGD engine calls and losses, but three separate training
  forwards, a separate no-grad forward for the AUC, an `.item()` per number, default memory
  format, fp32, no compile, in a process of its own that leaves glibc's allocator alone (as a
  plain script would). The harness alternates between the two processes (A B A B ..., one working
  at a time), so load from other jobs hits both.
- **Pass bound** = (T + K) x (best input-gradient pass) + 3 x (best training pass), passes at
  batch B timed in the same rounds, best over memory formats and both processes ("kept": the
  library's process with `keep_large_buffers`; "glibc": the plain process). The step's
  **fraction of the bound** = bound / step time (1.0 = nothing but the passes the method needs).
- **FLOPs** are counted by `torch.utils.flop_counter` on one pass of each kind (convolutions and
  matrix multiplies, backward included: an input-gradient pass counts 2x a forward, a training
  pass about 3x) and composed as the bound is; GFLOP/s = those FLOPs / measured time, against a
  2048^3 matrix multiply timed in the same rounds.
- Inputs are random tensors of the dataset's shape (a pass costs the same whatever the pixels);
  models are freshly initialised with BatchNorm frozen. "best" is the fastest repeat, the
  median is given beside it.
"""

ALLOCATOR = """## The CPU allocator setting

glibc serves a buffer above its mmap threshold (which it raises by itself to at most 32 MiB)
from `mmap` and unmaps it on free, so a pass whose activations exceed 32 MiB page-faults all of
them afresh, every time (tests/test_speed.py counts the faults). `dualat.speed.keep_large_buffers()`
(glibc `mallopt`: buffers below 1 GiB from the heap, no trimming) keeps them; `dualat train` and
the `dualat` CLI call it on CPU, and library users can call it from their own scripts. What it is
worth on this machine is the "kept" against the "glibc" columns above and table (g); its cost is
that freed memory stays with the process for reuse, and the peak of (e).
"""


def _f(x, digits=3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _ms(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _mib(b) -> str:
    return f"{b / 2 ** 20:.0f} MiB"


def _model(key: str, m: dict) -> list[str]:
    t, lim, st, B = m["times"], m["limit"], m["step"], m["batch_size"]
    lines = [f"## {m['title']}", "",
             f"Batch B = {B}, T = {m['T']} contrastive steps, K = {m['K']} attack steps; library memory format "
             f"{m['library_format']}, compiled: {m['compiled']}, bf16 autocast: {m['amp']}; "
             f"{m['rounds']} interleaved repeats after {m['warmup_rounds']} warm-up round(s) of the steps "
             "(single passes are always warmed up first).", "",
             "### (a)-(c) One DAT iteration", "",
             "| | library `dat_step` | straightforward `reference_dat_step` |", "|---|---|---|",
             f"| seconds / iteration, best (median) | {_f(t['lib_step']['best'])} ({_f(t['lib_step']['median'])}) "
             f"| {_f(t['ref_step']['best'])} ({_f(t['ref_step']['median'])}) |",
             f"| images / s (B per iteration) | {st['lib_images_per_s']:.0f} | {st['ref_images_per_s']:.0f} |",
             f"| fraction of the pass bound | {lim['lib_fraction_of_bound']:.2f} | {lim['ref_fraction_of_bound']:.2f} |",
             f"| GFLOP/s of the method's FLOPs | {lim['lib_gflops']:.1f} ({100 * lim['lib_gflops'] / lim['matmul_gflops']:.0f}% "
             f"of matmul) | {lim['ref_gflops']:.1f} ({100 * lim['ref_gflops'] / lim['matmul_gflops']:.0f}%) |", "",
             *_amp_lines(m),
             f"Library over straightforward: **x{st['speedup_best']:.2f}** on the best times, "
             f"x{st['speedup_median']:.2f} on the medians. The method's FLOPs per iteration: "
             f"{lim['step_flops'] / 1e9:.1f} GFLOP; the straightforward step adds {lim['ref_extra_flops'] / 1e9:.1f} "
             f"GFLOP for its AUC forward.", "",
             f"**The limit**: pass bound = {lim['pass_bound_formula']} = {_f(lim['pass_bound_s'])} s. "
             f"Input-gradient pass {_ms(lim['input_grad_pass_s'])} ({lim['input_grad_pass_gflops']:.1f} GFLOP/s), "
             f"training pass {_ms(lim['train_pass_s'])} ({lim['train_pass_gflops']:.1f} GFLOP/s); "
             f"{lim['matmul_dtype']} matmul {lim['matmul_gflops']:.1f} GFLOP/s. One fused training pass over 3B "
             f"images: {_ms(t['train3/lib']['best'])} (3 separate passes of B: {_ms(3 * lim['train_pass_s'])}).", "",
             *_thread_lines(m),
             "Single passes at batch B by memory format and allocator, best (median):", "",
             "| pass | contiguous, glibc | contiguous, kept | channels-last, glibc | channels-last, kept |",
             "|---|---|---|---|---|"]
    for kind, name in (("input_grad", "input-gradient"), ("train", "training")):
        cells = [f"{_ms(t[f'{kind}/{fmt}/{al}']['best'])} ({_ms(t[f'{kind}/{fmt}/{al}']['median'])})"
                 for fmt in ("contiguous", "channels_last") for al in ("glibc", "kept")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    s = m["sampling"]
    lines += ["", f"### (d) Sampling: {s['steps']}-step generation of {s['images']} images (`sample.generate`)", "",
              "| | library | straightforward |", "|---|---|---|",
              f"| seconds, best (median) | {_f(s['lib']['best'])} ({_f(s['lib']['median'])}) | "
              f"{_f(s['ref']['best'])} ({_f(s['ref']['median'])}) |",
              f"| images / s | {s['lib_images_per_s']:.0f} | {s['ref_images_per_s']:.0f} |",
              f"| fraction of the bound ({s['steps']} input-gradient passes = {_f(s['bound_s'])} s) | "
              f"{s['lib_fraction_of_bound']:.2f} | {s['ref_fraction_of_bound']:.2f} |", "",
              f"Library sampling runs at {s['lib_gflops']:.1f} GFLOP/s ({s['rounds']} repeat(s)).", "",
              "### (e) Peak memory of one step (fresh process each, T = K = 1)", "",
              "| | library | straightforward |", "|---|---|---|"]
    mem = m["memory"]
    if "error" in mem["lib"] or "error" in mem["ref"]:
        lines.append(f"| error | {mem['lib'].get('error', '')} | {mem['ref'].get('error', '')} |")
    else:
        lines += [f"| {mem['lib']['what']}: before the step | {_mib(mem['lib']['before_bytes'])} | {_mib(mem['ref']['before_bytes'])} |",
                  f"| peak | {_mib(mem['lib']['peak_bytes'])} | {_mib(mem['ref']['peak_bytes'])} |",
                  f"| the step's own | {_mib(mem['lib']['step_bytes'])} | {_mib(mem['ref']['step_bytes'])} |"]
    lines += ["", "### (f) Seconds per iteration against T (library step)", ""]
    if m["t_sweep"] is None:
        lines.append("Not run for this model by default (about a minute per iteration on 2 CPU cores); "
                     "`--full` runs it.")
    else:
        sw = m["t_sweep"]
        fit = sw["fit"]
        lines += ["| T | " + " | ".join(str(x) for x in sw["T"]) + " |", "|---" * (len(sw["T"]) + 1) + "|",
                  "| best s | " + " | ".join(_f(x) for x in sw["best_s"]) + " |",
                  "| median s | " + " | ".join(_f(x) for x in sw["median_s"]) + " |", "",
                  f"Straight-line fit of the best times: {_f(fit['intercept_s'])} s + {_f(fit['slope_s_per_T'], 4)} s x T, "
                  f"R^2 = {fit['r2']:.4f}, largest residual {100 * fit['max_rel_residual']:.1f}% of its point; "
                  f"the slope is {fit['slope_s_per_T'] / lim['input_grad_pass_s']:.2f} input-gradient passes per step of T."]
    lines += ["", "### (g) Input-gradient pass throughput against batch size", ""]
    if m["batch_sweep"] is None:
        lines.append("Not run for this model by default; `--full` runs it.")
    else:
        rows = m["batch_sweep"]["rows"]
        batches = sorted({r["batch"] for r in rows})
        get = {(r["batch"], r["allocator"]): r for r in rows}
        lines += [f"Images / s of one input-gradient pass ({m['batch_sweep']['format']}), best repeat:", "",
                  "| batch | " + " | ".join(str(b) for b in batches) + " |", "|---" * (len(batches) + 1) + "|"]
        for al, name in (("glibc", "plain process (glibc untouched)"), ("kept", "library process (keep_large_buffers)")):
            lines.append(f"| {name} | " + " | ".join(f"{get[(b, al)]['images_per_s']:.0f}" for b in batches) + " |")
    if m.get("profile"):
        from .profile import markdown as profile_markdown
        lines += ["", "### (h) Where one library step's time goes (torch.profiler, `--profile`)", ""]
        for dtype, p in m["profile"].items():
            lines += profile_markdown(p, f"{dtype} step")
    return lines + [""]


def _thread_lines(m: dict) -> list[str]:
    th = m.get("threads")
    if not th:
        return []
    return [f"Thread setting: the library's input-gradient pass takes {_ms(th['input_grad_pass_s'])} (median "
            f"{_ms(th['median_s'])}) with {th['threads']} torch thread(s) and {_ms(th['other_input_grad_pass_s'])} "
            f"(median {_ms(th['other_median_s'])}) with {th['other_threads']}, timed in the same rounds.", ""]


def _amp_lines(m: dict) -> list[str]:
    v = m.get("amp_variant")
    if not v:
        return []
    how = ("bf16 autocast on this CPU's native bf16" if v.get("native_bf16", True) else
           "bf16 autocast, emulated: this CPU has no native bf16")
    rounds = f", best of {v['rounds']}" if "rounds" in v else ""
    return ["", f"The same library step under bf16 autocast ({how}), timed in the "
            f"same rounds{rounds}: **{v['s_per_it']:.3f} s** per iteration ({v['images_per_s']:.0f} images/s), "
            f"x{v['speedup_over_lib']:.2f} over the float32 library step and x{v['speedup_over_ref']:.2f} over the "
            f"straightforward one; its own bf16 pass bound ({_ms(v['input_grad_pass_s'])} input-gradient, "
            f"{_ms(v['train_pass_s'])} training pass) is {_f(v['pass_bound_s'])} s, a fraction of "
            f"{v['fraction_of_bound']:.2f}; {v['gflops']:.1f} GFLOP/s against a bf16 matmul's "
            f"{v['matmul_bf16_gflops']:.3g}.", ""]


def _goals(r: dict) -> list[str]:
    lines = ["## Goals (this run)", "", "| model | library step / pass bound (goal >= 0.90) | "
             "speed-up over straightforward (goal >= 1.15) |", "|---|---|---|"]
    for key, m in r["models"].items():
        f, x = m["limit"]["lib_fraction_of_bound"], m["step"]["speedup_best"]
        lines.append(f"| {key} | {f:.2f} ({'met' if f >= 0.9 else 'not met'}) | "
                     f"x{x:.2f} ({'met' if x >= 1.15 else 'not met'}) |")
    return lines + [""]


def markdown(r: dict, json_path: Path) -> str:
    mach = r["machine"]
    la0 = " / ".join(f"{x:.2f}" for x in r["load_average_start"])
    la1 = " / ".join(f"{x:.2f}" for x in r["load_average_end"])
    out = [HEAD.format(command=r["command"], json_name=json_path.name), "| | |", "|---|---|",
           f"| date | {r['date']} |", f"| code | commit {mach.get('commit', 'unknown')} |",
           f"| machine | {mach['cpu']}, {mach['logical_cpus']} logical CPUs |", *tables.machine_rows(mach),
           f"| device, threads | {mach['device']}{', ' + mach['gpu'] if 'gpu' in mach else ''}, "
           f"{mach['threads']} torch threads |",
           f"| software | torch {mach['torch']}, Python {mach['python']} |",
           f"| allocator | keep_large_buffers applied: {mach['allocator_tuning']} |",
           f"| load average (1 / 5 / 15 min) | start {la0}; end {la1} |",
           f"| wall time of the run | {r['wall_s']:.0f} s |"]
    if r.get("note"):
        out.append(f"| note | {r['note']} |")
    if r.get("tables_read"):
        out.append(f"| finished-run tables | read again on {r['tables_read']['date']} by "
                   f"`{r['tables_read']['command']}` (evaluations that ended after the timings) |")
    if r.get("quick"):
        out.append("| mode | `--quick` smoke run: tiny batches and step counts; not a measurement |")
    out.append("")
    if not mach["device"].startswith("cuda"):
        out += ["No GPU was used for this run. `--device cuda` runs the same harness with bf16 autocast and "
                "torch.compile on (`--no-amp`, `--no-compile` switch them off), synchronising the device around "
                "every timed call and reporting `torch.cuda.max_memory_allocated`; it has not been run for this page.",
                ""]
    out += _goals(r) + tables.bf16_section(r) + [HOW]
    for key, m in r["models"].items():
        out += _model(key, m)
    out.append(ALLOCATOR)
    out += (tables.ttq_section(r.get("time_to_quality")) + tables.k_section(r.get("k_runs"))
            + tables.others_section(r.get("other_machines") or []))
    return "\n".join(out).rstrip("\n") + "\n"
