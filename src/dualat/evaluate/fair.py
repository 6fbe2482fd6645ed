"""The fair comparison over training seeds (issue 27, item 5): several sampling-cost results
(evaluate/sampling_cost.py, one per training seed, each with its own DAT run and, where given, its
own JEM run) pooled into mean ± sd per curve and pass count.

A point is pooled only where every result that has the curve reached that pass count; `n` says
how many runs it pools (a curve measured on one JEM run has n = 1 and no sd). The JEM replay
buffer is pooled as a reference line, the seeds alone as an optional extra row. `select` keeps
some curves of one result (e.g. only JEM's, from a run measured for its JEM seed) and can name
them, so that two recipes' DAT curves can be pooled into one table and figure."""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import DualatError
from .plot import line_plot

KEYS = ("fd", "precision", "recall")
METHODS = ("dat", "stage1", "jem")  # a curve's "method" in a sampling_cost() result


def _stats(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "sd": sd, "n": n}


def select(result: dict, methods=None, label: str | None = None) -> dict:
    """A copy of one sampling_cost() result with only the curves whose "method" is in `methods`
    (dat, stage1, jem; None keeps every curve), each renamed "<name> (<label>)" when `label` is
    given. The JEM replay buffer goes with the jem curves, the DAT run's path with dat or stage1."""
    if methods is not None:
        methods = tuple(methods)
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise DualatError(f"unknown curve kind {unknown[0] if unknown else ''!r}: choose from {', '.join(METHODS)}")
    curves = [dict(c, name=f"{c['name']} ({label})" if label else c["name"]) for c in result["curves"]
              if methods is None or c.get("method") in methods]
    if not curves:
        raise DualatError(f"the result of {(result.get('dat') or {}).get('path', '?')} has no {'/'.join(methods or ('',))} "
                          f"curve: measure it with scripts/sampling_cost.py (--jem RUN for JEM's curves)")
    keep_jem = methods is None or "jem" in methods
    keep_dat = methods is None or "dat" in methods or "stage1" in methods
    return {**result, "curves": curves, "jem": result.get("jem") if keep_jem else None,
            "buffer_reference": result.get("buffer_reference") if keep_jem else None,
            "dat": result.get("dat") if keep_dat else None}


def pool(results: list[dict], seeds_alone: list[float] | None = None) -> dict:
    """results: sampling_cost() dicts (one per training seed, one dataset, sample count and extractor).
    seeds_alone: the FD of the seeds alone per run (e.g. eval-gen's fd_seeds), or None."""
    if not results:
        raise DualatError("give at least one sampling_cost.json to pool")
    first = results[0]
    for r in results[1:]:
        for key in ("dataset", "extractor", "n_samples", "n_ref", "ref_split"):
            if r[key] != first[key]:
                raise DualatError(f"the results differ in {key} ({first[key]!r} against {r[key]!r}): "
                                  f"pool results measured by one protocol")
    curves: dict[str, dict[float, dict[str, list[float]]]] = {}
    runs: dict[str, int] = {}
    for r in results:
        for c in r["curves"]:
            runs[c["name"]] = runs.get(c["name"], 0) + 1
            for p in c["points"]:
                cell = curves.setdefault(c["name"], {}).setdefault(p["passes_per_image"], {k: [] for k in KEYS})
                for k in KEYS:
                    cell[k].append(float(p[k]))
    pooled = []
    for name, by_cost in curves.items():
        points = [{"passes_per_image": cost, **{k: _stats(v[k]) for k in KEYS}}
                  for cost, v in sorted(by_cost.items()) if len(v["fd"]) == runs[name]]
        pooled.append({"name": name, "runs": runs[name], "points": points})
    buffers = [r["buffer_reference"] for r in results if r.get("buffer_reference")]
    buffer = ({"name": buffers[0]["name"], **{k: _stats([float(b[k]) for b in buffers]) for k in KEYS}}
              if buffers else None)
    return {"dataset": first["dataset"], "extractor": first["extractor"], "n_samples": first["n_samples"],
            "n_ref": first["n_ref"], "ref_split": first["ref_split"], "runs": len(results),
            "dat_runs": [r["dat"]["path"] for r in results if r.get("dat")],
            "jem_runs": [r["jem"]["path"] for r in results if r.get("jem")],
            "curves": pooled, "buffer_reference": buffer,
            "seeds_alone_fd": _stats(seeds_alone) if seeds_alone else None}


def _cell(s: dict | None, digits: int = 3) -> str:
    if s is None:
        return ""
    text = f"{s['mean']:.{digits}f}"
    return text + (f" ± {s['sd']:.{digits}f}" if s["sd"] is not None else " (1 run)")


def markdown(p: dict) -> str:
    """One row per pass count, one column per curve: FD mean ± sd (precision / recall means)."""
    costs = sorted({pt["passes_per_image"] for c in p["curves"] for pt in c["points"]})
    names = [c["name"] for c in p["curves"]]
    counts = ", ".join(f"{c['name']}: {c['runs']}" for c in p["curves"])
    lines = [f"{p['dataset']}: {p['n_samples']} fresh samples per point against {p['n_ref']} {p['ref_split']} "
             f"images ({p['extractor']} features); mean ± sd over the runs of each curve ({counts}).", "",
             "| passes / image | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for cost in costs:
        cells = []
        for c in p["curves"]:
            pt = next((q for q in c["points"] if q["passes_per_image"] == cost), None)
            cells.append("" if pt is None else f"{_cell(pt['fd'])} ({pt['precision']['mean']:.3f} / "
                         f"{pt['recall']['mean']:.3f})")
        lines.append(f"| {cost:g} | " + " | ".join(cells) + " |")
    b = p.get("buffer_reference")
    if b:
        lines += ["", f"{b['name']}: FD {_cell(b['fd'])}, precision {_cell(b['precision'])}, "
                  f"recall {_cell(b['recall'])}."]
    if p.get("seeds_alone_fd"):
        lines += ["", f"The seeds alone: FD {_cell(p['seeds_alone_fd'])}."]
    return "\n".join(lines) + "\n"


def write(p: dict, out) -> dict:
    """fair_comparison.json, .md and .png (mean FD against passes per image) in the folder `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fair_comparison.json").write_text(json.dumps(p, indent=1))
    (out / "fair_comparison.md").write_text(markdown(p))
    series = [{"label": f"{c['name']} ({c['runs']} run{'s' if c['runs'] > 1 else ''})",
               "x": [pt["passes_per_image"] for pt in c["points"]], "y": [pt["fd"]["mean"] for pt in c["points"]]}
              for c in p["curves"]]
    hlines = []
    if p.get("buffer_reference"):
        hlines.append((p["buffer_reference"]["fd"]["mean"], p["buffer_reference"]["name"]))
    if p.get("seeds_alone_fd"):
        hlines.append((p["seeds_alone_fd"]["mean"], "the seeds alone"))
    line_plot(series, out / "fair_comparison.png", title=f"{p['dataset']}: mean FD of fresh samples against "
              f"sampling cost ({p['n_samples']} samples, {p['extractor']} features)",
              xlabel="forward + backward passes per image", ylabel=f"FD ({p['extractor']} features)",
              hlines=hlines, logy=True)
    return {"json": out / "fair_comparison.json", "markdown": out / "fair_comparison.md",
            "figure": out / "fair_comparison.png"}


__all__ = ["select", "pool", "markdown", "write", "METHODS"]
