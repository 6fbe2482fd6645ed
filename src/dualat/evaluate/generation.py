"""The generative family of `evaluate()`: fresh samples (DAT's PGD sampler, or a JEM run's replay
buffer / fresh SGLD chains) measured in a feature extractor: FD, IS-style score, precision /
recall / density / coverage, class agreement, with the protocol text."""
from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class Reference:
    """What the generated samples are measured against: `real` features (n, D) of ref_split
    images, their (mu, sigma) (or loaded statistics), its description, and `floor` features of
    the other split (the FD a perfect sampler would still have)."""
    real: object
    stats: tuple
    desc: str
    floor: object


def generative_family(t: Target, o: GenerativeOptions, out=None):
    """(numbers with generative_protocol, kept samples uint8 or None, their labels): fresh samples
    of the run's sampler measured in one feature extractor against a reference. With `out`, the
    reference statistics are also saved there (the one file this family writes itself)."""
    cfg, dist = t.cfg, t.dist
    method = method_of(cfg)
    sampler = o.sampler or method.sampler
    how_to = get_sampler(sampler)
    if o.sweep_steps:
        check_sweep_sampler(sampler)
    if how_to.needs_replay_buffer and not method.replay_buffer:
        raise DualatError(f"sampler {sampler} needs a JEM run (method=jem); this run was trained with {cfg.method}")
    train_set = load_split(cfg.data, "train")
    shape = tuple(t.test_set.shape)
    if o.seeds is None:
        seeds = make_seed_source(cfg.data.seeds, shape, "test", train_set, cfg.data.seed_folder, cfg.seed)
    else:  # evaluate(seeds=...): another held-out seed source, named as `dualat sample --seeds` names it
        seeds = seed_source(o.seeds, cfg, shape)
    if not dist.is_main:
        dist.barrier()  # rank 0 trains and caches the evaluation network first, if needed
    ext = make_extractor(o.extractor, cfg.data, cfg.eval.evalnet, cfg.eval.evalnet_iterations, o.inception_weights,
                         t.device, t.show_progress)
    if dist.is_main:
        dist.barrier()
    ref = reference(t, o, ext, train_set, out)
    draw = sampler_draw(t, o, how_to, seeds, train_set)
    labels = balanced_labels(draw.n, t.test_set.num_classes)
    if not how_to.needs_replay_buffer:
        draw.labels = labels  # class-conditional: the balanced classes
    s = sample_features(ext, how_to.chunks(draw), dist=dist if how_to.shards else None)
    t.dtypes["samples"] = FLOAT32 if how_to.float32 else t.dtype  # JEM's SGLD / buffer: float32
    t.dtypes["features"] = FLOAT32
    if how_to.needs_replay_buffer:  # unconditional JEM samples: the label is the model's own prediction
        labels = s["labels"]
    res = generative_metrics(s["feats"], s["probs"], ref.real, ref.stats, k=o.k, splits=o.is_splits)
    if o.sweep_steps:
        res["generative_sweep"] = generative_sweep(t, sampler, ext, (ref.real, ref.stats), draw, o)
    res["fd_floor_train_vs_test"] = frechet_distance(*gaussian_stats(ref.floor), *ref.stats)
    res["fd_seeds"] = frechet_distance(*gaussian_stats(s["seed_feats"]), *ref.stats)
    if ext.name == "evalnet":
        res["class_agreement"] = float((s["probs"].argmax(1) == labels.numpy()).mean())
    seed_kind = cfg.data.seeds if o.seeds is None else o.seeds
    res.update({"sampler": sampler, "extractor": ext.name, "n_samples": draw.n, "sample_steps": draw.steps,
                "sample_step_size": draw.step_size, "sample_seeds": seed_kind, "sample_seed": draw.seed,
                "n_ref": len(ref.real), "ref": ref.desc,
                "generative_protocol": protocol(t, o, how_to, draw, ext, ref, seed_kind)})
    kept = s["samples"]  # None on processes other than rank 0
    return res, kept, None if kept is None else labels[:len(kept)]


def reference(t: Target, o: GenerativeOptions, ext, train_set, out=None) -> Reference:
    """The reference features and statistics (loaded from o.ref_stats, or of o.n_ref ref_split
    images, saved into `out`), and the floor: as many images of the other split."""
    cfg, ref_split = t.cfg, o.ref_split
    ref_set, other_set = (train_set, t.test_set) if ref_split == "train" else (t.test_set, train_set)
    n_ref = o.n_ref or o.n_samples
    real, _ = dataset_features(ext, ref_set, n_ref, seed=cfg.seed, show_progress=t.show_progress,
                               desc=f"{ref_split} features ({ext.name})")
    if o.ref_stats:
        try:
            mu_r, sigma_r, meta = load_stats(o.ref_stats)
        except (OSError, KeyError, ValueError) as exc:
            raise DualatError(f"cannot read reference statistics {o.ref_stats}: {exc}") from None
        if mu_r.shape != (real.shape[1],):
            raise DualatError(f"reference statistics {o.ref_stats} have dimension {mu_r.shape}, the {ext.name} "
                              f"features {real.shape[1]}; compute them with the same extractor")
        desc = f"loaded from {o.ref_stats}" + (f" ({meta})" if meta else "")
    else:
        mu_r, sigma_r = gaussian_stats(real)
        desc = f"{len(real)} {ref_split} images"
        if out is not None and t.dist.is_main:
            save_stats(out / f"ref_stats_{ext.name}_{ref_split}.npz", mu_r, sigma_r, extractor=ext.name,
                       split=ref_split, n=len(real), dataset=cfg.data.name)
    floor, _ = dataset_features(ext, other_set, min(n_ref, len(other_set)), seed=cfg.seed + FLOOR_SEED,
                                show_progress=t.show_progress, desc="floor features")
    return Reference(real, (mu_r, sigma_r), desc, floor)


def sampler_draw(t: Target, o: GenerativeOptions, how_to, seeds, train_set) -> Draw:
    """The sampling job: o.n_samples (capped at a replay buffer's size) with the sampler's steps and
    step size (o's, else the run's defaults), from the sample seed."""
    cfg, info, sample_seed = t.cfg, t.info, t.cfg.seed + SAMPLE_SEED
    if how_to.needs_replay_buffer:  # JEM's samplers: the run's own chain settings
        steps = o.steps if o.steps is not None else (cfg.jem.eval_sgld_steps or cfg.jem.sgld_steps)
        draw = Draw(t.model, o.n_samples, steps, o.step_size or cfg.jem.sgld_step_size, sample_seed,
                    init=initial_distribution(cfg, train_set, tuple(train_set.shape)), noise=cfg.jem.sgld_noise,
                    clamp=cfg.jem.clamp, show_progress=t.show_progress,
                    images=load_buffer(Path(info["path"]).parent) if not how_to.takes_steps else None)
        draw.n = how_to.count(draw)
        return draw
    steps = o.steps if o.steps is not None else default_steps(cfg, info["final_T"], info.get("sample_steps"))
    return Draw(t.model, o.n_samples, steps, o.step_size or default_step_size(cfg), sample_seed, seeds=seeds,
                autocast=t.autocast, share=(t.dist.rank, t.dist.world_size), show_progress=t.show_progress)


def protocol(t: Target, o: GenerativeOptions, how_to, draw: Draw, ext, ref: Reference, seed_kind: str) -> str:
    """The generative_protocol text: how the samples were drawn and measured."""
    n, steps, step_size, seed = draw.n, draw.steps, draw.step_size, draw.seed
    if not how_to.needs_replay_buffer:
        how = (f"{n} class-balanced samples ({t.test_set.num_classes} classes cycled), {steps} steps of size "
               f"{step_size:g} (L2-normalised ascent on f_y, clipped to [0,1]) from held-out {seed_kind} seeds (seed "
               f"{seed})")
        agree = "class_agreement = evalnet's prediction equals the conditioning class"
    else:
        j = t.cfg.jem
        start = "uniform noise" if j.buffer_init == "uniform" else "per-class Gaussians fitted to the training set"
        how = (f"{n} samples drawn at random (seed {seed}) from the run's final replay buffer"
               if not how_to.takes_steps else
               f"{n} fresh SGLD chains of {steps} steps (x <- x - {step_size:g}/2 grad E + {j.sgld_noise:g} eps"
               f"{', clipped to [0,1]' if j.clamp else ''}) from {start} (seed {seed})")
        agree = "class_agreement = evalnet's prediction equals the JEM model's own prediction (unconditional samples)"
    fid_note = ("an FID comparable with papers" if ext.name == "inception"
                else "NOT an FID: never compare with papers' FIDs")
    other_split = "test" if o.ref_split == "train" else "train"
    return (f"sampler {how_to.name}: {how}, {t.weights}; features: {ext.description}; FD = Frechet distance to the "
            f"reference ({ref.desc}), {fid_note}; IS = exp E[KL(p(y|x) || p(y))] from the extractor's class "
            f"probabilities, mean ± std over {o.is_splits} splits; precision/recall/density/coverage with k={o.k} "
            f"nearest neighbours, {len(ref.real)} real vs {n} generated; floor = {len(ref.floor)} {other_split} "
            f"images vs the reference; fd_seeds = the seeds / chain starts themselves"
            + (f"; {agree}" if ext.name == "evalnet" else ""))
