"""The generative family of `evaluate()`: fresh samples (DAT's PGD sampler, or a JEM run's replay
buffer / fresh SGLD chains) measured in a feature extractor: FD, IS-style score, precision /
recall / density / coverage, class agreement, with the protocol text."""
from __future__ import annotations

from pathlib import Path


from ..data import load_split, make_seed_source
from ..errors import DualatError
from ..precision import FLOAT32
from ..methods import method_of
from ..metrics import frechet_distance, gaussian_stats, load_stats, save_stats
from ..sampler import balanced_labels, default_step_size, default_steps
from ..sample import seed_source
from ..samplers import Draw, get_sampler
from ..seeding import FLOOR_SEED, SAMPLE_SEED
from ..sgld import initial_distribution, load_buffer
from .extractors import EXTRACTORS, make_extractor
from .generative import dataset_features, generative_metrics, sample_features
from .inception import load_fid_inception
from .options import GenerativeOptions, Target
from .sweep import check_sweep_sampler, generative_sweep

def check_generative_options(o: GenerativeOptions) -> None:
    """Argument mistakes surface before minutes of other families."""
    n_samples, n_ref, k, is_splits, extractor, inception_weights, ref_split = (
        o.n_samples, o.n_ref, o.k, o.is_splits, o.extractor, o.inception_weights, o.ref_split)
    if n_samples < max(is_splits, k + 1) or (n_ref is not None and n_ref < k + 1):
        raise DualatError(f"generative metrics need at least max({is_splits} IS splits, k+1={k + 1}) samples "
                          f"and more than k={k} reference images; got n_samples={n_samples}, n_ref={n_ref}")
    if extractor not in EXTRACTORS:
        raise DualatError(f"unknown feature extractor {extractor!r}; use one of {', '.join(EXTRACTORS)}")
    if ref_split not in ("train", "test"):
        raise DualatError(f"ref_split must be train or test, got {ref_split!r}")
    if extractor == "inception" and not (inception_weights and Path(inception_weights).is_file()):
        load_fid_inception(inception_weights)  # raises the clear error: no weights file / not found


def generative_family(t: Target, o: GenerativeOptions, out=None):
    """(numbers with generative_protocol, kept samples uint8 or None, their labels): fresh samples
    of the run's sampler measured in one feature extractor against a reference. With `out`, the
    reference statistics are also saved there (the one file this family writes itself)."""
    model, cfg, info, test_set, weights = t.model, t.cfg, t.info, t.test_set, t.weights
    device, show_progress, dist = t.device, t.show_progress, t.dist
    n_samples, steps, step_size, sampler = o.n_samples, o.steps, o.step_size, o.sampler
    extractor, inception_weights, ref_stats, ref_split = o.extractor, o.inception_weights, o.ref_stats, o.ref_split
    n_ref, k, is_splits, sweep_steps, seed_name = o.n_ref, o.k, o.is_splits, o.sweep_steps, o.seeds
    d = cfg.data
    method = method_of(cfg)
    sampler = sampler or method.sampler
    how_to = get_sampler(sampler)
    if sweep_steps:
        check_sweep_sampler(sampler)
    if how_to.needs_replay_buffer and not method.replay_buffer:
        raise DualatError(f"sampler {sampler} needs a JEM run (method=jem); this run was trained with {cfg.method}")
    train_set = load_split(d, "train")
    if seed_name is None:
        seeds = make_seed_source(d.seeds, tuple(test_set.shape), "test", train_set, d.seed_folder, cfg.seed)
    else:  # evaluate(seeds=...): another held-out seed source, named as `dualat sample --seeds` names it
        seeds = seed_source(seed_name, cfg, tuple(test_set.shape))
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
    floor, _ = dataset_features(ext, other_set, min(n_ref, len(other_set)), seed=cfg.seed + FLOOR_SEED,
                                show_progress=show_progress, desc="floor features")
    sample_seed = cfg.seed + SAMPLE_SEED
    if how_to.needs_replay_buffer:  # JEM's samplers: the run's own chain settings
        steps = steps if steps is not None else (cfg.jem.eval_sgld_steps or cfg.jem.sgld_steps)
        step_size = step_size or cfg.jem.sgld_step_size
        draw = Draw(model, n_samples, steps, step_size, sample_seed,
                    init=initial_distribution(cfg, train_set, tuple(train_set.shape)), noise=cfg.jem.sgld_noise,
                    clamp=cfg.jem.clamp, show_progress=show_progress,
                    images=load_buffer(Path(info["path"]).parent) if not how_to.takes_steps else None)
        n_samples = how_to.count(draw)
    else:
        steps = steps if steps is not None else default_steps(cfg, info["final_T"], info.get("sample_steps"))
        step_size = step_size or default_step_size(cfg)
        draw = Draw(model, n_samples, steps, step_size, sample_seed, seeds=seeds, autocast=t.autocast,
                    share=(dist.rank, dist.world_size), show_progress=show_progress)
    labels = balanced_labels(n_samples, test_set.num_classes)
    if not how_to.needs_replay_buffer:
        draw.labels = labels  # class-conditional: the balanced classes
    s = sample_features(ext, how_to.chunks(draw), dist=dist if how_to.shards else None)
    t.dtypes["samples"] = FLOAT32 if how_to.float32 else t.dtype  # JEM's SGLD / buffer: float32
    t.dtypes["features"] = FLOAT32
    if how_to.needs_replay_buffer:  # unconditional JEM samples: the label is the model's own prediction
        labels = s["labels"]
    fake, fake_probs = s["feats"], s["probs"]
    res = generative_metrics(fake, fake_probs, real, (mu_r, sigma_r), k=k, splits=is_splits)
    if sweep_steps:
        res["generative_sweep"] = generative_sweep(t, sampler, ext, (real, (mu_r, sigma_r)), draw, o)
    res["fd_floor_train_vs_test"] = frechet_distance(*gaussian_stats(floor), mu_r, sigma_r)
    res["fd_seeds"] = frechet_distance(*gaussian_stats(s["seed_feats"]), mu_r, sigma_r)
    if ext.name == "evalnet":
        res["class_agreement"] = float((fake_probs.argmax(1) == labels.numpy()).mean())
    if not how_to.needs_replay_buffer:
        how = (f"{n_samples} class-balanced samples ({test_set.num_classes} classes cycled), {steps} steps of size "
               f"{step_size:g} (L2-normalised ascent on f_y, clipped to [0,1]) from held-out {seed_kind} seeds (seed "
               f"{sample_seed})")
        agree = "class_agreement = evalnet's prediction equals the conditioning class"
    else:
        j = cfg.jem
        start = "uniform noise" if j.buffer_init == "uniform" else "per-class Gaussians fitted to the training set"
        how = (f"{n_samples} samples drawn at random (seed {sample_seed}) from the run's final replay buffer"
               if not how_to.takes_steps else
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
