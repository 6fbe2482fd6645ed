"""`evaluate()`: the numbers of one checkpoint, each family with its protocol, as a dict and
metrics.json (plus samples, reference statistics and a reliability diagram in `out`).

Families: robust (clean, PGD L2/Linf, optionally AutoAttack), generative (FD, IS-style score,
precision/recall/density/coverage in one feature extractor), ood (AUROC, clean and
adversarial), calibration (ECE), and, only when asked for, counterfactuals (validity under the
model and an independent judge, closeness, realism; evaluate/counterfactuals.py). Every number is
computed with the weights named by `checkpoint` (default the EMA weights, the ones also used for
sampling) in eval mode. Each family is a function of its own (evaluate/families.py, evaluate/generation.py) with a small
option object (evaluate/options.py); `write_evaluation` writes what they computed.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..data import load_split
from ..distributed import from_env, session
from ..errors import DualatError
from ..images import class_grid, save_png
from ..loading import load_model
from ..precision import precision
from ..data.seeds_extra import check_seed_name
from .calibration import reliability_diagram
from .counterfactuals import check_counterfactual_options, counterfactual_family
from .cost import parse_steps
from .families import budgets, calibration_family, ood_family, robust_family
from ..samplers import SAMPLERS, get_sampler
from .generation import check_generative_options, generative_family
from .options import CounterfactualOptions, Target
from .settings import EvaluateOptions
from .report import format_table

FAMILIES = ("robust", "generative", "ood", "calibration", "counterfactuals")


def evaluate(source, checkpoint: str = "ema", options: EvaluateOptions | None = None, *, out=None, dist=None,
             **settings) -> dict:
    """Evaluate a run directory / checkpoint file; returns the flat result dict (see format_table).

    The settings: an EvaluateOptions (evaluate/settings.py), or its fields and the family options'
    fields as flat keywords: robust / generative / ood / calibrate (which families run), n,
    device, show_progress, amp, and the rest below.

    n: test images for clean / PGD / AutoAttack / OOD positives / calibration (None = all; the
    AutoAttack default is 1000 when n is None; n_autoattack sets it apart from n).
    norm/eps: restrict robustness to one norm, eps
    for it; eps_l2 / eps_linf (numbers or '8/255') override the defaults of robust.default_eps.
    Generative: n_samples class-balanced samples from held-out seeds, `steps` (default the run's
    final curriculum T) of size `step_size` (default 2x training step); reference = n_ref
    (default n_samples) `ref_split` images or `ref_stats` (.npz with mu, sigma) for the FD.
    sampler: pgd (DAT's sampler: ascent on f_y from held-out seeds; the default for DAT runs),
    buffer (a JEM run's replay buffer; the default for JEM runs) or sgld (fresh SGLD chains from
    the run's initial distribution, `steps` default jem.eval_sgld_steps, `step_size` default
    jem.sgld_step_size, noise jem.sgld_noise). The metrics name the sampler.
    sweep_steps: step counts (e.g. [10, 20, 40, 80] or "10,20,40,80") at which the generative
    metrics of fresh samples are also measured, as result["generative_sweep"] (evaluate/sweep.py).
    seeds: the PGD sampler's seed source instead of the run's data.seeds (held-out split), by name
    as for `dualat sample --seeds`: patches, patches_jitter, photos_more, mix[:F], gaussian, noise, folder:DIR.
    OOD: n_ood images per OOD set, adversarial push of L2 radius ood_eps (default the L2 eps).
    options: the fields of the family option objects (evaluate/options.py) as keywords.
    Under torchrun (or with `dist`, a dualat.distributed.Dist): clean / PGD / AutoAttack accuracy
    and sample generation are shared between the processes and gathered; everything else runs on
    every process alike; rank 0 writes `out`; every process returns the same dict.
    amp: None (the run's own `amp` setting), False, True or "auto" (dualat.precision): PGD sampling
    and counterfactuals run in what it resolves to on `device`; clean / PGD accuracy run in float32
    unless `amp` is given; AutoAttack, OOD scores, calibration and the feature extractor always run
    in float32.
    metrics.json's `compute_dtype` names the arithmetic behind each number.
    counterfactuals: also (off by default) the counterfactual family: cf_n class-balanced test images
    toward cf_target (wrong, wrong-judge, true, all or a class index) at `radii`, cf_steps PGD steps,
    judged by `judge` (default the evaluation network); result["counterfactuals"] holds one row per
    radius; out/counterfactuals.npz the counterfactuals.
    """
    if options is not None and (settings or checkpoint != "ema"):
        raise TypeError("give EvaluateOptions or keywords, not both")
    o = options if options is not None else EvaluateOptions.of(checkpoint, **settings)
    n, g = o.n, o.family["generative"]
    if g.sampler is not None:
        get_sampler(g.sampler)  # an unknown name is refused here, naming the choices
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise DualatError(f"n (test images) must be a whole number >= 1 or None for all, got {n!r}")
    if o.generative:  # argument mistakes surface before minutes of other families
        check_generative_options(g)
    if g.seeds is not None:
        check_seed_name(g.seeds)
    if o.counterfactuals:
        check_counterfactual_options(o.family["counterfactuals"])
    elif o.family["counterfactuals"] != CounterfactualOptions():
        raise DualatError("--cf-n, --cf-target, --radii, --cf-steps and --judge set the counterfactual family; "
                          "add --counterfactuals")
    if g.sweep_steps is not None:
        g.sweep_steps = parse_steps(g.sweep_steps)
        if not o.generative:
            raise DualatError("--sweep-steps measures the generative metrics at each step count; add --generative")
    device = o.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dist is not None:
        return _evaluate(source, replace(o, device=device), out, dist)
    with session(from_env(), device) as d:  # torchrun's processes (or this one alone) for the evaluation
        return _evaluate(source, replace(o, device=d.device if d.enabled else device), out, d)


def _evaluate(source, o: EvaluateOptions, out, dist) -> dict:
    n, opts, device, amp = o.n, o.family, o.device, o.amp
    show_progress = o.show_progress and dist.is_main
    model, cfg, info = load_model(source, o.checkpoint, device=device)
    test_set = load_split(cfg.data, "test")
    n_test = len(test_set) if n is None else min(n, len(test_set))
    weights = f"{info['checkpoint']} weights of {info['path']} (sha256 {info['sha256']})"
    dtype, autocast = precision(cfg.amp if amp is None else amp, device)
    dtypes = {}  # number -> the arithmetic of the model forwards that produced it (the families fill it)
    t = Target(model, cfg, info, test_set, n_test, weights, device, dist, show_progress, dtype, autocast, dtypes,
               robust_in_dtype=amp is not None)
    result = {"checkpoint": info, "dataset": cfg.data.name, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
              "device": str(device)}
    out = Path(out) if out is not None else None
    if out is not None and dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    samples = labels = None
    if o.robust:
        result.update(robust_family(t, opts["robust"], n))
    if o.generative and len(test_set.shape) == 3:
        g, samples, labels = generative_family(t, opts["generative"], out if dist.is_main else None)
        result.update(g)
    elif o.generative:
        result["generative_skipped"] = f"{cfg.data.name} is not image data"
    if o.ood:
        result.update(ood_family(t, opts["ood"], budgets(cfg, opts["robust"])["L2"]))
    if o.calibrate:
        result.update(calibration_family(t, opts["calibrate"]))
        if out is not None and dist.is_main:
            result["reliability_diagram"] = write_reliability(out, result, n_test)
    if o.counterfactuals:
        result.update(counterfactual_family(t, opts["counterfactuals"], out if dist.is_main else None))
    result["processes"] = dist.world_size
    result["amp"] = cfg.amp if amp is None else amp
    result["compute_dtype"] = dtypes
    if out is not None and dist.is_main:
        write_evaluation(out, result, samples, labels, test_set.num_classes)
    return result


def write_reliability(out: Path, result: dict, n_test: int) -> str:
    """OUT/reliability.png of a calibration result; returns its path."""
    reliability_diagram(result["calibration_bins"], out / "reliability.png",
                        f"{result['dataset']}: ECE {result['ece']:.4f}, accuracy {result['calibration_accuracy']:.4f}, "
                        f"n={n_test}")
    return str(out / "reliability.png")


def write_evaluation(out: Path, result: dict, samples=None, labels=None, num_classes: int = 0) -> None:
    """metrics.json, and samples.png / samples.npz (uint8, as many as the generative family kept)."""
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    if samples is not None:
        save_png(class_grid(samples.float() / 255, labels, num_classes, scale=2), out / "samples.png")
        np.savez_compressed(out / "samples.npz", x=samples.numpy(), y=labels.numpy())


__all__ = ["evaluate", "write_evaluation", "format_table", "FAMILIES", "SAMPLERS"]
