"""The "other machines" rows of docs/performance.md: one per docs/performance-*.json.

Such a file is either a harness result kept from another day or machine (what
`python -m benchmarks.run` writes: it has "models"), or {"kind": "whole_runs", ...}: numbers of
whole training runs, with their commands, their source and where (or whether) raw data exists.
Each row links its file; the numbers are summarised from the file, never typed into the page.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

FLAGS = ("avx2", "avx512_bf16", "amx_bf16")


def flags_text(flags: dict | None) -> str:
    if not flags:
        return "not recorded"
    return ", ".join(f"{f} {'yes' if flags.get(f) else 'no'}" for f in FLAGS if f in flags)


def _harness(r: dict) -> dict:
    mach = r["machine"]
    parts = []
    for key, m in r["models"].items():
        st = m["step"]
        text = (f"{key} (B {m['batch_size']}, T {m['T']}, K {m['K']}): library step {st['lib_s_per_it']:.3g} s, "
                f"x{st['speedup_best']:.2f} over straightforward")
        v = m.get("amp_variant")
        if v:
            how = {True: "native", False: "emulated", None: "native flags not recorded"}[v.get("native_bf16")]
            ratio = v["speedup_over_lib"]
            text += (f"; bf16 step x{ratio:.2f} faster ({how})" if ratio >= 1
                     else f"; bf16 step {1 / ratio:.1f}x slower ({how})")
        parts.append(text)
    la = r.get("load_average_start")
    load = f"; load average at start {la[0]:.1f}" if la else ""
    return {"date": r["date"][:10], "machine": f"{mach['cpu']}, {mach['logical_cpus']} logical CPUs, "
            f"{mach['threads']} torch thread(s)", "flags": flags_text(mach.get("cpu_flags")),
            "what": f"harness{' `--quick` (smoke sizes)' if r.get('quick') else ''} at commit "
                    f"{mach.get('commit', 'unknown')}{load}: `{r['command']}`",
            "result": "; ".join(parts), "note": "" if r.get("note", "") in r["command"] else r["note"]}


def _whole_runs(r: dict) -> dict:
    res = r["results"]
    f, b = res["float32"], res["bfloat16"]
    result = (f"whole run {f['wall_s']['run']:,} s in float32, {b['wall_s']['run']:,} s in bf16 "
              f"(x{f['wall_s']['run'] / b['wall_s']['run']:.2f}); clean {100 * f['clean']:.2f}% / "
              f"{100 * b['clean']:.2f}%, PGD-20 L2 {100 * f['pgd20_l2']:.2f}% / {100 * b['pgd20_l2']:.2f}%, "
              f"FD {f['fd']:.2f} / {b['fd']:.2f}, precision {f['precision']:.3f} / {b['precision']:.3f}, "
              f"recall {f['recall']:.3f} / {b['recall']:.3f} (float32 / bf16)")
    return {"date": r["date"], "machine": r["machine"], "flags": flags_text(r.get("cpu_flags")),
            "what": f"{r['title']}, commit {r.get('commit', 'unknown')}: " + "; ".join(f"`{c}`" for c in r["commands"]),
            "result": f"{result}; {r.get('reading', '')}".rstrip("; "),
            "note": f"{r['source']}; {r.get('raw_data_note') or 'raw data: ' + str(r.get('raw_data'))}"}


def rows(folder: Path, page: Path) -> list[dict]:
    """One row per folder/performance-*.json, oldest first; `link` is relative to the page."""
    out = []
    for path in sorted(Path(folder).glob("performance-*.json")):
        r = json.loads(path.read_text())
        row = _whole_runs(r) if r.get("kind") == "whole_runs" else _harness(r)
        out.append({**row, "link": os.path.relpath(path.resolve(), Path(page).resolve().parent)})
    return sorted(out, key=lambda x: x["date"])
