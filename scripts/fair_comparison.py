"""Pool sampling-cost results of several training seeds into mean ± sd (issue 27, item 5).

    python scripts/sampling_cost.py --dat RUN_SEED_k [--jem JEM_SEED_k] --out SC_k ...   # once per seed
    python scripts/fair_comparison.py SC_1 SC_2 SC_3 --out OUT [--seeds-alone RUN/eval-gen ...]

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
from dualat.evaluate.fair import markdown, pool, write


def _read(path: Path, name: str) -> dict:
    f = path / name if path.is_dir() else path
    if not f.is_file():
        raise DualatError(f"{f} not found: give the folder that scripts/sampling_cost.py (or dualat eval) wrote")
    return json.loads(f.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="sampling_cost output folders (or their .json files)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seeds-alone", nargs="*", type=Path, default=[], help="eval folders whose fd_seeds to pool")
    a = p.parse_args(argv)
    try:
        results = [_read(r, "sampling_cost.json") for r in a.results]
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
