"""Pool sampling-cost results of several training seeds into mean ± sd (issue 27, item 5).

    python scripts/sampling_cost.py --dat RUN_SEED_k [--jem JEM_SEED_k] --out SC_k ...   # once per seed
    python scripts/fair_comparison.py SC_1 SC_2 SC_3 --out OUT [--seeds-alone RUN/eval-gen ...]

A result may keep only some of its curves: SC#jem (JEM's curves and replay buffer), SC#dat,stage1
(dat, stage1, jem). --group LABEL SC ... pools results whose curves are named "<curve> (LABEL)",
so that two recipes' DAT curves share one table and figure:

    python scripts/fair_comparison.py runs/sc/a#stage1,jem runs/sc/jem1#jem --out OUT \
        --group "stage 2 x 2" runs/sc/a-long#dat runs/sc/b-long#dat

Writes OUT/fair_comparison.json, .md (FD mean ± sd, precision / recall means, per pass count and
curve; the JEM replay buffer and the seeds alone as reference lines) and .png, and prints the table.
--seeds-alone reads `fd_seeds` from each given `dualat eval --generative` folder's metrics.json.
Library: dualat.evaluate.fair.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dualat.errors import DualatError
from dualat.evaluate.fair import markdown, pool, select, write


def _read(path: Path, name: str) -> dict:
    f = path / name if path.is_dir() else path
    if not f.is_file():
        raise DualatError(f"{f} not found: give the folder that scripts/sampling_cost.py (or dualat eval) wrote")
    return json.loads(f.read_text())


def _spec(text: str, label: str | None = None) -> dict:
    """PATH or PATH#KIND[,KIND...] -> the result at PATH with those curves (select)."""
    path, _, kinds = text.partition("#")
    methods = [k.strip() for k in kinds.split(",")] if kinds else None
    return select(_read(Path(path), "sampling_cost.json"), methods, label)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="*", help="sampling_cost output folders (or their .json files), each "
                   "optionally PATH#KIND[,KIND] to keep only its dat / stage1 / jem curves")
    p.add_argument("--group", nargs="+", action="append", default=[], metavar=("LABEL", "RESULT"),
                   help="LABEL RESULT [RESULT ...]: results whose curves are named '<curve> (LABEL)'")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seeds-alone", nargs="*", type=Path, default=[], help="eval folders whose fd_seeds to pool")
    a = p.parse_args(argv)
    try:
        if not a.results and not a.group:
            raise DualatError("give at least one sampling_cost folder (positional or after --group LABEL)")
        bad = [g for g in a.group if len(g) < 2]
        if bad:
            raise DualatError(f"--group {bad[0][0]!r} names no result: write --group LABEL RESULT [RESULT ...]")
        results = [_spec(r) for r in a.results] + [_spec(r, g[0]) for g in a.group for r in g[1:]]
        seeds = [float(_read(s, "metrics.json")["fd_seeds"]) for s in a.seeds_alone]
        pooled = pool(results, seeds or None)
        write(pooled, a.out)
    except (DualatError, KeyError) as exc:
        print(f"fair_comparison: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(pooled))
    print(f"written: {a.out}/fair_comparison.json, fair_comparison.md, fair_comparison.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
