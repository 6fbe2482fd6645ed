"""`evaluate()`: the numbers of one checkpoint, each family with its protocol, as a dict and
metrics.json (plus samples, reference statistics and a reliability diagram in `out`).

Families: robust (clean, PGD L2/Linf, optionally AutoAttack), generative (FD, IS-style score,
precision/recall/density/coverage in one feature extractor), ood (AUROC, clean and
adversarial), calibration (ECE). Every number is computed with the weights named by
`checkpoint` (default the EMA weights, the ones also used for sampling) in eval mode.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..data import load_dataset, make_seed_source
from ..data.seeds_extra import check_seed_name
from ..distributed import from_env, session, sharded_accuracy
from ..errors import DualatError
from ..images import class_grid, save_png
from ..loading import load_model
from ..metrics import frechet_distance, gaussian_stats, load_stats, save_stats
from ..sample import balanced_labels
from .autoattack import autoattack_accuracy
from .calibration import calibration, reliability_diagram
from .cost import parse_steps
from .extractors import EXTRACTORS, make_extractor
from .generative import dataset_features, generative_metrics, sample_features
from .ood import ood_auroc, ood_sets
from .report import format_table
from .robust import clean_accuracy, default_eps, parse_eps, pgd_accuracy

FAMILIES = ("robust", "generative", "ood", "calibration")
SAMPLERS = ("pgd", "buffer", "sgld")


def evaluate(source, checkpoint: str = "ema", robust: bool = True, generative: bool = True, ood: bool = True,
             calibrate: bool = True, n: int | None = None, *, norm: str | None = None, eps=None, eps_l2=None,
             eps_linf=None, pgd_steps: int = 20, pgd_step_size: float | None = None, restarts: int = 1,
             autoattack: bool = False, aa_version: str = "standard", aa_attacks: list[str] | None = None,
             aa_n_iter: int | None = None, n_samples: int = 10000, steps: int | None = None,
             step_size: float | None = None, extractor: str = "evalnet", inception_weights=None,
             ref_stats=None, ref_split: str = "train", n_ref: int | None = None, k: int = 5,
             is_splits: int = 10, n_ood: int = 2000, ood_eps: float | None = None, ood_steps: int = 20,
             ood_root=None, n_bins: int = 15, out=None, device=None, show_progress: bool = True,
             sampler: str | None = None, n_autoattack: int | None = None, dist=None, sweep_steps=None,
             seeds: str | None = None) -> dict:
    """Evaluate a run directory / checkpoint file; returns the flat result dict (see format_table).

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
    Under torchrun (or with `dist`, a dualat.distributed.Dist): clean / PGD / AutoAttack accuracy
    and sample generation are shared between the processes and gathered; everything else runs on
    every process alike; rank 0 writes `out`; every process returns the same dict.
    """
    if sampler is not None and sampler not in SAMPLERS:
        raise DualatError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if generative:  # argument mistakes surface before minutes of other families
        _check_generative_args(n_samples, n_ref, k, is_splits, extractor, inception_weights, ref_split)
    if seeds is not None:
        check_seed_name(seeds)
    if sweep_steps is not None:
        sweep_steps = parse_steps(sweep_steps)
        if not generative:
            raise DualatError("--sweep-steps measures the generative metrics at each step count; add --generative")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dist is None:  # torchrun's processes (or this one alone) for the duration of the evaluation
        call = dict(locals())
        with session(from_env(), device) as d:
            return evaluate(**{**call, "dist": d, "device": d.device if d.enabled else device})
    show_progress = show_progress and dist.is_main
    model, cfg, info = load_model(source, checkpoint, device=device)
    d = cfg.data
    kw = dict(root=d.root, image_size=d.image_size, channels=d.channels, num_classes=d.num_classes)
    test_set = load_dataset(d.name, "test", **kw)
    n_test = len(test_set) if n is None else min(n, len(test_set))
    weights = f"{info['checkpoint']} weights of {info['path']} (sha256 {info['sha256']})"
    result = {"checkpoint": info, "dataset": d.name, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "device": str(device)}
    out = Path(out) if out is not None else None
    if out is not None and dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    eps_by = default_eps(cfg)
    if eps is not None:
        eps_by[norm or cfg.stage2.attack.norm] = parse_eps(eps)
    if eps_l2 is not None:
        eps_by["L2"] = parse_eps(eps_l2)
    if eps_linf is not None:
        eps_by["Linf"] = parse_eps(eps_linf)
    if robust:
        norms = [norm] if norm else ["L2", "Linf"]
        result["clean_acc"] = sharded_accuracy(dist, clean_accuracy, model, test_set, n_test,
                                               show_progress=show_progress)
        result["clean_protocol"] = f"first {n_test} of {len(test_set)} test images, {weights}, eval mode"
        for nm in norms:
            result[f"eps_{nm}"] = eps_by[nm]
            result[f"pgd_{nm}_acc"] = sharded_accuracy(dist, pgd_accuracy, model, test_set, n_test, nm, eps_by[nm],
                                                       pgd_steps, pgd_step_size, restarts, show_progress=show_progress)
        run_norm = cfg.stage2.attack.norm if cfg.stage2.attack.norm in norms else norms[0]
        result["robust_acc"] = result[f"pgd_{run_norm}_acc"]
        step = f"{pgd_step_size:g}" if pgd_step_size else "2.5*eps/steps"
        result["robust_protocol"] = (
            f"untargeted PGD-{pgd_steps} on cross-entropy (dualat.pgd), step {step}, {restarts} restart(s)"
            f"{' with random start' if restarts > 1 else ', no random start'}; "
            + "; ".join(f"{nm} eps={eps_by[nm]:.6g}" for nm in norms)
            + f"; first {n_test} test images; robust_acc = the run's own norm ({run_norm}); {weights}")
        if autoattack:
            n_aa = min(n_autoattack, len(test_set)) if n_autoattack else (
                n_test if n is not None else min(1000, len(test_set)))
            protocols = []
            for nm in norms:
                aa = autoattack_accuracy(model, test_set, n_aa, nm, eps_by[nm], aa_version, aa_attacks, aa_n_iter,
                                         show_progress=show_progress, dist=dist)
                result[f"autoattack_{nm}_acc"] = aa["robust_acc"]
                result[f"autoattack_{nm}_max_perturbation"] = aa["max_perturbation"]
                result["autoattack_clean_acc"] = aa["clean_acc"]
                protocols.append(aa["protocol"])
            result["autoattack_protocol"] = " | ".join(protocols) + f"; {weights}"
    samples = labels = None
    if generative and len(test_set.shape) == 3:
        g, samples, labels = _generative(model, cfg, info, test_set, kw, weights, n_samples, steps, step_size,
                                         extractor, inception_weights, ref_stats, ref_split, n_ref, k, is_splits,
                                         device, out, show_progress, dist, sampler, sweep_steps, seeds)
        result.update(g)
    elif generative:
        result["generative_skipped"] = f"{d.name} is not image data"
    if ood:
        sets, skipped = ood_sets(cfg, tuple(test_set.shape), min(n_ood, max(n_test, 1)), seed=cfg.seed + 7,
                                 root=ood_root)
        adv_eps = parse_eps(ood_eps) if ood_eps is not None else eps_by["L2"]
        result["ood_auroc"] = ood_auroc(model, test_set, sets, adv_eps, ood_steps, n_test, show_progress)
        result["ood_skipped"] = skipped
        result["ood_protocol"] = (
            f"AUROC, in-distribution = first {n_test} test images (positive) vs {min(n_ood, max(n_test, 1))} images of "
            f"each OOD set ({', '.join(sets)}; uniform noise seed {cfg.seed + 7}, patches = held-out test crops of the "
            f"bundled photos); scores logsumexp f(x) = -E(x) and max softmax; adv_* = OOD inputs first moved "
            f"by PGD-{ood_steps} ascending logsumexp inside an L2 ball of radius {adv_eps:.6g} (step 2.5*eps/steps); "
            f"{weights}")
    if calibrate:
        c = calibration(model, test_set, n_test, n_bins, show_progress=show_progress)
        result.update({"ece": c["ece"], "calibration_accuracy": c["accuracy"], "mean_confidence": c["mean_confidence"],
                       "nll": c["nll"], "calibration_bins": c["bins"]})
        result["calibration_protocol"] = (f"expected calibration error of the max-softmax confidence, {n_bins} "
                                          f"equal-width bins, first {n_test} test images; {weights}")
        if out is not None and dist.is_main:
            reliability_diagram(c["bins"], out / "reliability.png",
                                f"{d.name}: ECE {c['ece']:.4f}, accuracy {c['accuracy']:.4f}, n={n_test}")
            result["reliability_diagram"] = str(out / "reliability.png")
    result["processes"] = dist.world_size
    if out is not None and dist.is_main:
        (out / "metrics.json").write_text(json.dumps(result, indent=1))
        if samples is not None:  # uint8, as many as evaluate kept (all of them for small images)
            save_png(class_grid(samples.float() / 255, labels, test_set.num_classes, scale=2), out / "samples.png")
            np.savez_compressed(out / "samples.npz", x=samples.numpy(), y=labels.numpy())
    return result


def _check_generative_args(n_samples, n_ref, k, is_splits, extractor, inception_weights, ref_split):
    if n_samples < max(is_splits, k + 1) or (n_ref is not None and n_ref < k + 1):
        raise DualatError(f"generative metrics need at least max({is_splits} IS splits, k+1={k + 1}) samples "
                          f"and more than k={k} reference images; got n_samples={n_samples}, n_ref={n_ref}")
    if extractor not in EXTRACTORS:
        raise DualatError(f"unknown feature extractor {extractor!r}; use one of {', '.join(EXTRACTORS)}")
    if ref_split not in ("train", "test"):
        raise DualatError(f"ref_split must be train or test, got {ref_split!r}")
    if extractor == "inception" and not (inception_weights and Path(inception_weights).is_file()):
        from .inception import load_fid_inception
        load_fid_inception(inception_weights)  # raises the clear error: no weights file / not found


def _generative(model, cfg, info, test_set, kw, weights, n_samples, steps, step_size, extractor, inception_weights,
                ref_stats, ref_split, n_ref, k, is_splits, device, out, show_progress, dist, sampler=None,
                sweep_steps=None, seed_name=None):
    d = cfg.data
    sampler = sampler or ("buffer" if cfg.method == "jem" else "pgd")
    if sweep_steps:
        from .sweep import check_sweep_sampler
        check_sweep_sampler(sampler)
    if sampler != "pgd" and cfg.method != "jem":
        raise DualatError(f"sampler {sampler} needs a JEM run (method=jem); this run was trained with {cfg.method}")
    train_set = load_dataset(d.name, "train", **kw)
    if seed_name is None:
        seeds = make_seed_source(d.seeds, tuple(test_set.shape), "test", train_set, d.seed_folder, cfg.seed)
    else:  # evaluate(seeds=...): another held-out seed source, named as `dualat sample --seeds` names it
        from ..sample import _seed_source
        seeds = _seed_source(seed_name, cfg, tuple(test_set.shape))
    seed_kind = d.seeds if seed_name is None else seed_name
    if not dist.is_main:
        dist.barrier()  # rank 0 trains and caches the evaluation network first, if needed
    ext = make_extractor(extractor, d, cfg.eval.evalnet, cfg.eval.evalnet_iterations, inception_weights, device,
                         show_progress)
    if dist.is_main:
        dist.barrier()
    ref_set, other_set = (train_set, test_set) if ref_split == "train" else (test_set, train_set)
    n_ref = n_ref or n_samples
    real, _ = dataset_features(ext, ref_set, n_ref, seed=cfg.seed, show_progress=show_progress,
                               desc=f"{ref_split} features ({ext.name})")
    if ref_stats:
        try:
            mu_r, sigma_r, meta = load_stats(ref_stats)
        except (OSError, KeyError, ValueError) as exc:
            raise DualatError(f"cannot read reference statistics {ref_stats}: {exc}") from None
        if mu_r.shape != (real.shape[1],):
            raise DualatError(f"reference statistics {ref_stats} have dimension {mu_r.shape}, the {ext.name} "
                              f"features {real.shape[1]}; compute them with the same extractor")
        ref_desc = f"loaded from {ref_stats}" + (f" ({meta})" if meta else "")
    else:
        mu_r, sigma_r = gaussian_stats(real)
        ref_desc = f"{len(real)} {ref_split} images"
        if out is not None and dist.is_main:
            save_stats(out / f"ref_stats_{ext.name}_{ref_split}.npz", mu_r, sigma_r, extractor=ext.name,
                       split=ref_split, n=len(real), dataset=d.name)
    floor, _ = dataset_features(ext, other_set, min(n_ref, len(other_set)), seed=cfg.seed + 1,
                                show_progress=show_progress, desc="floor features")
    sample_seed = cfg.seed + 99
    chunks, seen = None, []
    if sampler == "pgd":
        steps = steps if steps is not None else (info["final_T"] or cfg.stage2.t_max)
        step_size = step_size or 2 * cfg.stage2.step_size
    else:
        from ..train.jem import sampler_chunks
        steps = steps if steps is not None else (cfg.jem.eval_sgld_steps or cfg.jem.sgld_steps)
        step_size = step_size or cfg.jem.sgld_step_size
        n_samples, chunks = sampler_chunks(sampler, model, cfg, Path(info["path"]).parent, train_set, n_samples, steps,
                                           step_size, sample_seed, seen, show_progress)
    labels = balanced_labels(n_samples, test_set.num_classes)
    s = sample_features(model, ext, seeds, labels, steps, step_size, sample_seed, show_progress=show_progress,
                        dist=dist, sampled=chunks)
    balanced = labels
    if seen:  # unconditional JEM samples: the label is the model's own prediction
        labels = torch.cat(seen)
    fake, fake_probs = s["feats"], s["probs"]
    res = generative_metrics(fake, fake_probs, real, (mu_r, sigma_r), k=k, splits=is_splits)
    if sweep_steps:
        from .sweep import generative_sweep
        res["generative_sweep"] = generative_sweep(model, cfg, sampler, ext, real, (mu_r, sigma_r), sweep_steps, seeds,
                                                   balanced, step_size, sample_seed, train_set, k, is_splits, dist)
    res["fd_floor_train_vs_test"] = frechet_distance(*gaussian_stats(floor), mu_r, sigma_r)
    res["fd_seeds"] = frechet_distance(*gaussian_stats(s["seed_feats"]), mu_r, sigma_r)
    if ext.name == "evalnet":
        res["class_agreement"] = float((fake_probs.argmax(1) == labels.numpy()).mean())
    if sampler == "pgd":
        how = (f"{n_samples} class-balanced samples ({test_set.num_classes} classes cycled), {steps} steps of size "
               f"{step_size:g} (L2-normalised ascent on f_y, clipped to [0,1]) from held-out {seed_kind} seeds (seed "
               f"{sample_seed})")
        agree = "class_agreement = evalnet's prediction equals the conditioning class"
    else:
        j = cfg.jem
        start = "uniform noise" if j.buffer_init == "uniform" else "per-class Gaussians fitted to the training set"
        how = (f"{n_samples} samples drawn at random (seed {sample_seed}) from the run's final replay buffer"
               if sampler == "buffer" else
               f"{n_samples} fresh SGLD chains of {steps} steps (x <- x - {step_size:g}/2 grad E + {j.sgld_noise:g} eps"
               f"{', clipped to [0,1]' if j.clamp else ''}) from {start} (seed {sample_seed})")
        agree = "class_agreement = evalnet's prediction equals the JEM model's own prediction (unconditional samples)"
    fid_note = ("an FID comparable with papers" if ext.name == "inception"
                else "NOT an FID: never compare with papers' FIDs")
    other_split = "test" if ref_split == "train" else "train"
    res.update({
        "sampler": sampler, "extractor": ext.name, "n_samples": n_samples, "sample_steps": steps,
        "sample_step_size": step_size,
        "sample_seeds": seed_kind, "sample_seed": sample_seed, "n_ref": len(real), "ref": ref_desc,
        "generative_protocol": (
            f"sampler {sampler}: {how}, {weights}; features: {ext.description}; FD = Frechet distance to the reference "
            f"({ref_desc}), {fid_note}; IS = exp E[KL(p(y|x) || p(y))] from the extractor's class probabilities, "
            f"mean ± std over {is_splits} splits; precision/recall/density/coverage with k={k} nearest neighbours, "
            f"{len(real)} real vs {n_samples} generated; floor = {len(floor)} {other_split} "
            f"images vs the reference; fd_seeds = the seeds / chain starts themselves"
            + (f"; {agree}" if ext.name == "evalnet" else "")),
    })
    kept = s["samples"]  # None on processes other than rank 0
    return res, kept, None if kept is None else labels[:len(kept)]


__all__ = ["evaluate", "format_table", "FAMILIES"]
