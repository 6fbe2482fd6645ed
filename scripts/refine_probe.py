"""Do a few last sampler steps at a smaller step size remove the grain without losing recall?

Measures, for one run, the standard generative protocol (class-balanced samples from the run's
held-out seeds, the run's chosen step count and step size, FD / precision / recall in the
evaluation network's features against all 10,000 test images) for the plain sampler and for the
same chains continued by N more steps of a smaller size s (`--refine N@s ...`). Every variant
continues the very same base samples, so differences are the refinement's alone.

    python scripts/refine_probe.py runs/g06 --refine 3@0.05 5@0.05 3@0.1 10@0.02 --out docs/data/refine_g06.json
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from dualat.data import load_split, make_seed_source
from dualat.evaluate.extractors import make_extractor
from dualat.evaluate.generative import dataset_features, generative_metrics
from dualat.loading import load_model
from dualat.metrics import gaussian_stats
from dualat.sampler import balanced_labels, default_step_size, default_steps
from dualat.samplers import generate
from dualat.seeding import SAMPLE_SEED


def parse_refine(text: str) -> tuple[int, float]:
    steps, _, size = text.partition("@")
    return int(steps), float(size)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--refine", nargs="+", type=parse_refine, required=True, help="N@s: N more steps of size s")
    ap.add_argument("--n-samples", type=int, default=2000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    t0 = time.time()
    model, cfg, info = load_model(args.run, "ema")
    train_set, test_set = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    shape = tuple(test_set.shape)
    seeds = make_seed_source(cfg.data.seeds, shape, "test", train_set, cfg.data.seed_folder, cfg.seed)
    ext = make_extractor("evalnet", cfg.data, cfg.eval.evalnet, cfg.eval.evalnet_iterations, None, "cpu", False)
    real, _ = dataset_features(ext, test_set, None)
    ref = gaussian_stats(real)
    steps = default_steps(cfg, info["final_T"], info.get("sample_steps"))
    size = default_step_size(cfg)
    labels = balanced_labels(args.n_samples, test_set.num_classes)
    gen = torch.Generator().manual_seed(cfg.seed + SAMPLE_SEED)
    base = generate(model, seeds, labels, steps, size, generator=gen)

    def measure(x, name, extra_steps=0, extra_size=0.0):
        feats, probs = ext(x)
        m = generative_metrics(feats, probs, real, ref)
        row = {"variant": name, "steps": steps, "step_size": size, "refine_steps": extra_steps,
               "refine_step_size": extra_size, "fd": m["fd"], "precision": m["precision"], "recall": m["recall"],
               "class_agreement": float((probs.argmax(1) == labels.numpy()).mean()),
               "pixel_std_of_laplacian": float(laplacian_energy(x))}
        print(f"{name:>12}: FD {row['fd']:.3f} precision {row['precision']:.3f} recall {row['recall']:.3f} "
              f"agreement {row['class_agreement']:.3f} high-frequency energy {row['pixel_std_of_laplacian']:.4f}",
              flush=True)
        return row

    rows = [measure(base, "none")]
    for n, s in args.refine:
        rows.append(measure(generate(model, base, labels, n, s), f"{n}@{s:g}", n, s))
    real_x = torch.stack([test_set[i][0] for i in range(args.n_samples)])
    out = {"run": args.run, "checkpoint": info["path"], "n_samples": args.n_samples, "n_ref": len(real),
           "seeds": cfg.data.seeds, "rows": rows, "real_pixel_std_of_laplacian": float(laplacian_energy(real_x)),
           "wall_s": round(time.time() - t0, 1), "threads": torch.get_num_threads(),
           "protocol": f"{args.n_samples} class-balanced samples from held-out {cfg.data.seeds} seeds (seed "
                       f"{cfg.seed + SAMPLE_SEED}), {steps} steps of {size:g}, then N more steps of size s from the "
                       f"same samples; FD / precision / recall (k=5) in evalnet features against all "
                       f"{len(real)} test images; high-frequency energy = std of the 4-neighbour Laplacian of "
                       f"the pixels (grain)"}
    print(f"real test images: high-frequency energy {out['real_pixel_std_of_laplacian']:.4f}")
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"written: {args.out} ({out['wall_s']:.0f} s)")


def laplacian_energy(x: torch.Tensor) -> float:
    """Standard deviation of the 4-neighbour Laplacian of the pixels: large for grainy images."""
    x = x.float()
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return float(np.std(lap.numpy()))


if __name__ == "__main__":
    main()
