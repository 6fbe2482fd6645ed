"""The seed ladder (issue 27): how much of DAT's sample quality is the seed model's own.

For DAT runs trained and sampled from different seed families, each with `dualat eval RUN
--generative ... --out RUN/eval-gen` done, writes a markdown table (and JSON): the family, the
size of its fitted model (numbers, and as a fraction of the full per-class Gaussian), FD of the
seeds alone, FD after DAT, their ratio, precision, recall, sampler steps (= passes per image:
one forward + backward per PGD step), the final T and stage 2's wall time.

    python scripts/seed_ladder.py runs/g06 runs/diag06 ... [--eval eval-gen] [--md F] [--json F]
    python scripts/seed_ladder.py --seeds-only gaussian,gaussian_diag,... [--preset fashion_mnist]

--seeds-only measures the families without training: each family's size and the FD of 2,000
class-balanced held-out seeds (sample seed 0) against the 10,000 test images in the evaluation
network's features, the `fd_seeds` protocol of `dualat eval --generative`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from dualat.config import load_config
from dualat.data import load_split, make_seed_source
from dualat.evaluate.extractors import make_extractor
from dualat.evaluate.generative import dataset_features
from dualat.metrics import frechet_distance, gaussian_stats
from dualat.sampler import balanced_labels


def seed_numbers(cfg) -> int:
    """The seed model's fitted numbers (0 for noise and other sources without a fitted model)."""
    train = load_split(cfg.data, "train")
    src = make_seed_source(cfg.data.seeds, tuple(train.shape), "test", train, cfg.data.seed_folder, cfg.seed)
    return int(getattr(src, "numbers", 0))


def full_gaussian_numbers(train) -> int:
    """The fitted numbers of the full-covariance per-class Gaussian: per class d means + d(d+1)/2."""
    d = int(np.prod(train.shape))
    return train.num_classes * (d + d * (d + 1) // 2)


def row(run: Path, eval_name: str, full: int) -> dict:
    cfg = load_config(run / "config.yaml")
    m = json.loads((run / eval_name / "metrics.json").read_text())
    s2 = json.loads((run / "summary.json").read_text())["stage2"]
    n = seed_numbers(cfg)
    return {"run": str(run), "seeds": cfg.data.seeds, "numbers": n, "fraction_of_full": n / full,
            "fd_seeds": m["fd_seeds"], "fd": m["fd"], "ratio": m["fd_seeds"] / m["fd"], "precision": m["precision"],
            "recall": m["recall"], "sample_steps": m["sample_steps"], "passes_per_image": m["sample_steps"],
            "T_final": s2["T_final"], "stage2_wall_min": round(s2["wall_s"] / 60, 1),
            "auc_threshold": cfg.stage2.auc_threshold, "n_samples": m["n_samples"], "n_ref": m["n_ref"]}


def markdown(rows: list[dict]) -> str:
    out = ["| seeds | fitted numbers | of the full Gaussian | FD of the seeds | FD after DAT | ratio | precision | "
           "recall | sampler steps = passes/image | final T | stage 2 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['seeds']} | {r['numbers']:,} | {r['fraction_of_full']:.4f} | {r['fd_seeds']:.2f} | "
                   f"{r['fd']:.3f} | {r['ratio']:.1f}x | {r['precision']:.3f} | {r['recall']:.3f} | "
                   f"{r['sample_steps']} | {r['T_final']} | {r['stage2_wall_min']} min |")
    return "\n".join(out) + "\n"


def seeds_only(kinds: list[str], preset: str, n: int = 2000) -> list[dict]:
    """Size and FD of each family's held-out seeds alone (no model)."""
    cfg = load_config(preset)
    train, test = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    ext = make_extractor("evalnet", cfg.data)
    ref = gaussian_stats(dataset_features(ext, test)[0])
    labels = balanced_labels(n, train.num_classes)
    full = full_gaussian_numbers(train)
    rows = []
    for kind in kinds:
        src = make_seed_source(kind, tuple(train.shape), "test", train, None, cfg.seed)
        x = src.sample(n, labels, torch.Generator().manual_seed(0))
        feats = ext(x)[0]
        numbers = int(getattr(src, "numbers", 0))
        rows.append({"seeds": kind, "numbers": numbers, "fraction_of_full": numbers / full,
                     "fd_seeds": float(frechet_distance(*gaussian_stats(feats), *ref)), "n_seeds": n, "n_ref": len(test)})
        print(f"| {kind} | {numbers:,} | {numbers / full:.4f} | {rows[-1]['fd_seeds']:.2f} |", flush=True)
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="*", type=Path)
    p.add_argument("--seeds-only", default=None, help="comma-separated seed families to measure without training")
    p.add_argument("--preset", default="fashion_mnist", help="the preset whose data --seeds-only uses")
    p.add_argument("--eval", default="eval-gen", help="the eval folder inside each run (default eval-gen)")
    p.add_argument("--md", type=Path)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    if a.seeds_only:
        print("| seeds | fitted numbers | of the full Gaussian | FD of the seeds |\n|---|---|---|---|")
        rows = seeds_only(a.seeds_only.split(","), a.preset)
        if a.json:
            a.json.write_text(json.dumps(rows, indent=1))
        return rows
    cfg = load_config(a.runs[0] / "config.yaml")
    full = full_gaussian_numbers(load_split(cfg.data, "train"))
    rows = [row(r, a.eval, full) for r in a.runs]
    table = markdown(rows)
    print(table, end="")
    if a.md:
        a.md.write_text(table)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
