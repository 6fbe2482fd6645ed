"""FD / precision / recall of FRESH samples against sampling passes per image: DAT's PGD sampler
(EMA and stage-1 weights) and JEM's SGLD chains (from its initial distribution and from the
per-class Gaussian), with JEM's replay buffer as a reference line (issue 15; library:
dualat.evaluate.sampling_cost).

    python scripts/sampling_cost.py --dat RUN_DAT --jem RUN_JEM --out docs/images/sampling_cost_fmnist
        [--n-samples 2000] [--n-ref 10000] [--dat-steps 10,20,40,80,160] [--sgld-steps 20,40,80,160,320,1000]

Writes OUT/sampling_cost.json, OUT/sampling_cost.md (the table) and OUT/sampling_cost.png (FD
against passes per image, log axes) and prints the table.
"""
from __future__ import annotations

import argparse
import sys

from dualat.errors import DualatError
from dualat.evaluate.sampling_cost import DAT_STEPS, SGLD_STEPS, SamplingCostOptions, markdown, sampling_cost


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dat", required=True, help="DAT run directory (its EMA and stage-1 checkpoints are used)")
    p.add_argument("--jem", default=None, help="JEM run directory (method=jem); omit for DAT and stage 1 only")
    p.add_argument("--out", required=True, help="folder for sampling_cost.json / .md / .png")
    p.add_argument("--n-samples", type=int, default=2000)
    p.add_argument("--n-ref", type=int, default=10000, help="reference images (default 10000)")
    p.add_argument("--ref-split", choices=["train", "test"], default="test")
    p.add_argument("--dat-steps", default=",".join(map(str, DAT_STEPS)))
    p.add_argument("--sgld-steps", default=",".join(map(str, SGLD_STEPS)))
    p.add_argument("--extractor", choices=["evalnet", "squeezenet", "inception"], default="evalnet")
    p.add_argument("--inception-weights", default=None)
    p.add_argument("--dat-seeds", default=None, help="PGD sampler seeds (default: the DAT run's data.seeds), "
                   "e.g. patches_jitter, photos_more, mix:0.5, gaussian")
    p.add_argument("--no-stage1", action="store_true", help="leave out the stage-1 curve")
    p.add_argument("--no-gaussian-start", action="store_true", help="leave out JEM's chains from the Gaussian")
    p.add_argument("--seed", type=int, default=99)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    try:
        options = SamplingCostOptions(n_samples=a.n_samples, n_ref=a.n_ref, ref_split=a.ref_split,
                                      dat_steps=a.dat_steps, sgld_steps=a.sgld_steps, extractor=a.extractor,
                                      inception_weights=a.inception_weights, seed=a.seed, stage1=not a.no_stage1,
                                      gaussian_start=not a.no_gaussian_start, device=a.device,
                                      show_progress=not a.quiet, dat_seeds=a.dat_seeds)
        result = sampling_cost(a.dat, a.jem, a.out, options)
    except DualatError as exc:
        print(f"sampling_cost: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(result))
    print(f"written: {a.out}/sampling_cost.json, sampling_cost.md, sampling_cost.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
