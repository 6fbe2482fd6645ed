"""The fair comparison of DAT with JEM (issue 15): quality of FRESH samples against sampling cost.

    sampling_cost(dat_run, jem_run, out)  -> dict; writes sampling_cost.json, sampling_cost.md and
                                             sampling_cost.png (FD against passes per image, log axes)

Curves, each point a fresh set of n samples measured against one reference (n_ref `ref_split`
images in the extractor's features):
  - DAT: the PGD sampler (class-conditional ascent on f_y) from the run's held-out seeds, EMA weights;
  - stage 1: the same sampler with the DAT run's stage-1 (adversarial training) weights;
  - JEM: fresh SGLD chains from the run's initial distribution (jem.buffer_init), and from the
    per-class Gaussian fitted to the training set (unless that is already the initial distribution);
  - JEM's replay buffer: a reference line, not a sampler (its chains ran during training).
The cost of a point is counted, not assumed: the images that go through the sampled model's
forward with autograd on, per sample (one forward and one backward pass each); forward-only
passes (the JEM samples' labels) are reported apart.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import load_split, make_seed_source
from ..data.seeds_extra import check_seed_name
from ..errors import DualatError
from ..loading import load_model
from ..methods import method_of
from ..metrics import gaussian_stats
from ..sample import seed_source
from ..sampler import balanced_labels, default_step_size
from ..sgld import InitialDistribution, initial_distribution, load_buffer
from .cost import buffer_draw, measure_curve, parse_steps, pgd_draw, sgld_draw
from .extractors import make_extractor
from .generative import dataset_features
from .plot import line_plot

DAT_STEPS = (10, 20, 40, 80, 160)
SGLD_STEPS = (20, 40, 80, 160, 320, 1000)


@dataclass
class SamplingCostOptions:
    """Every setting of `sampling_cost` (scripts/sampling_cost.py builds it from its arguments)."""
    n_samples: int = 2000
    n_ref: int = 10000
    ref_split: str = "test"
    dat_steps: object = DAT_STEPS       # step counts: "10,20,40" or a list
    sgld_steps: object = SGLD_STEPS
    extractor: str = "evalnet"
    inception_weights: str | None = None
    k: int = 5
    is_splits: int = 10
    seed: int = 99
    stage1: bool = True                 # also the DAT run's stage-1 curve
    gaussian_start: bool = True         # also JEM's chains from the per-class Gaussian
    device: str = "cpu"
    show_progress: bool = False
    dat_seeds: str | None = None


def _open(run, checkpoint, device, what):
    try:
        return load_model(run, checkpoint, device=device)
    except DualatError as exc:
        raise DualatError(f"{what}: {exc}") from None


def sampling_cost(dat_run, jem_run=None, out=None, options: SamplingCostOptions | None = None,
                  **settings) -> dict:
    """Measure the curves (see the module doc) and write them into `out` (when given).

    The settings: a SamplingCostOptions or its fields as keywords. dat_steps / sgld_steps: step
    counts ("10,20,40" or lists); dat_steps also serve the stage-1 curve. seed: the seeds / chain
    starts (the same for every point of a curve). dat_seeds: the PGD sampler's held-out seed
    source by name (default the DAT run's data.seeds)."""
    if options is not None and settings:
        raise TypeError("give SamplingCostOptions or keywords, not both")
    o = options if options is not None else SamplingCostOptions(**settings)
    dat_steps, sgld_steps = parse_steps(o.dat_steps, "dat_steps"), parse_steps(o.sgld_steps, "sgld_steps")
    if o.ref_split not in ("train", "test"):
        raise DualatError(f"ref_split must be train or test, got {o.ref_split!r}")
    if o.n_samples < max(o.is_splits, o.k + 1):
        raise DualatError(f"n_samples must be at least max({o.is_splits} IS splits, k+1={o.k + 1}), "
                          f"got {o.n_samples}")
    model, cfg, info = _open(dat_run, "ema", o.device, "DAT run")
    if "stage2" not in method_of(cfg).stages:
        raise DualatError(f"{dat_run} was trained with method={cfg.method}; give a DAT run as the first run")
    d = cfg.data
    train_set, test_set = load_split(d, "train"), load_split(d, "test")
    shape, num_classes = tuple(test_set.shape), test_set.num_classes
    if len(shape) != 3:
        raise DualatError(f"{d.name} is not image data: sampling cost needs images")
    ext = make_extractor(o.extractor, d, cfg.eval.evalnet, cfg.eval.evalnet_iterations, o.inception_weights,
                         o.device, o.show_progress)
    ref_set = test_set if o.ref_split == "test" else train_set
    real, _ = dataset_features(ext, ref_set, o.n_ref, seed=cfg.seed, show_progress=o.show_progress,
                               desc=f"{o.ref_split} features ({ext.name})")
    ref = gaussian_stats(real)
    labels = balanced_labels(o.n_samples, num_classes)
    if o.dat_seeds is None:
        seeds, seed_kind = make_seed_source(d.seeds, shape, "test", train_set, d.seed_folder, cfg.seed), d.seeds
    else:
        seeds, seed_kind = seed_source(check_seed_name(o.dat_seeds), cfg, shape), o.dat_seeds
    step_size = default_step_size(cfg)
    curves = []

    def add(name, method, sampler, start, mdl, draw, steps, weights):
        pts = measure_curve(mdl, draw, steps, ext, real, ref, k=o.k, is_splits=o.is_splits)
        curves.append({"name": name, "method": method, "sampler": sampler, "start": start, "weights": weights,
                       "points": pts})

    add("DAT, PGD sampler", "dat", "pgd", f"held-out {seed_kind} seeds", model,
        pgd_draw(model, ext, seeds, labels, step_size, o.seed), dat_steps, f"ema of {info['path']}")
    if o.stage1:
        m1, _, info1 = _open(dat_run, "stage1", o.device, "stage-1 weights of the DAT run")
        add("stage 1 (adversarial training), PGD sampler", "stage1", "pgd", f"held-out {seed_kind} seeds", m1,
            pgd_draw(m1, ext, seeds, labels, step_size, o.seed), dat_steps, f"stage1 of {info1['path']}")
    reference = None
    jem = None
    if jem_run is not None:
        jm, jcfg, jinfo = _open(jem_run, "ema", o.device, "JEM run")  # ema -> a JEM run's model
        if not method_of(jcfg).replay_buffer:
            raise DualatError(f"{jem_run} was trained with method={jcfg.method}; give a JEM run (method=jem)")
        if jcfg.data.name != d.name:
            raise DualatError(f"the DAT run is on {d.name}, the JEM run on {jcfg.data.name}: "
                              f"compare runs on one dataset")
        j = jcfg.jem
        init = initial_distribution(jcfg, train_set, shape)
        start = "uniform noise" if j.buffer_init == "uniform" else "per-class Gaussian"
        add(f"JEM, fresh SGLD from {start}", "jem", "sgld", start, jm,
            sgld_draw(jm, ext, init, o.n_samples, j.sgld_step_size, j.sgld_noise, j.clamp, o.seed), sgld_steps,
            f"model of {jinfo['path']}")
        if o.gaussian_start and j.buffer_init != "gaussian":
            gauss = InitialDistribution("gaussian", shape, num_classes,
                                        make_seed_source("gaussian", shape, "train", train_set, None, jcfg.seed))
            add("JEM, fresh SGLD from per-class Gaussian", "jem", "sgld", "per-class Gaussian", jm,
                sgld_draw(jm, ext, gauss, o.n_samples, j.sgld_step_size, j.sgld_noise, j.clamp, o.seed), sgld_steps,
                f"model of {jinfo['path']}")
        buffer = buffer_draw(jm, ext, load_buffer(Path(jinfo["path"]).parent), o.n_samples, o.seed)
        buf = measure_curve(jm, buffer, [0], ext, real, ref, k=o.k, is_splits=o.is_splits)[0]
        buf.pop("steps")
        buf["passes_per_image"] = None  # its chains ran during training: not a sampling cost
        reference = {"name": "JEM replay buffer (reference, not a sampler)", **buf}
        jem = {"path": str(jem_run), "sgld_step_size": j.sgld_step_size, "sgld_noise": j.sgld_noise,
               "clamp": j.clamp, "buffer_init": j.buffer_init}
    result = {
        "dataset": d.name, "extractor": ext.name, "extractor_description": ext.description,
        "n_samples": o.n_samples, "n_ref": len(real), "ref_split": o.ref_split, "seed": o.seed,
        "dat": {"path": str(dat_run), "step_size": step_size, "seeds": seed_kind}, "jem": jem,
        "curves": curves, "buffer_reference": reference,
        "protocol": (f"each point: {o.n_samples} fresh samples (class-balanced labels for the PGD sampler, the "
                     f"model's "
                     f"prediction for SGLD samples), generative metrics in {ext.name} features against {len(real)} "
                     f"{o.ref_split} images (k={o.k}); passes_per_image = counted images through the sampled model "
                     f"with "
                     f"autograd on per sample (one forward + one backward each)"),
    }
    if out is not None:
        write(result, out)
    return result


def equal_cost_rows(result: dict) -> list[dict]:
    """For each pass count reached by both a DAT curve and a JEM curve: the FD of each."""
    by_cost: dict[float, dict] = {}
    for c in result["curves"]:
        for p in c["points"]:
            by_cost.setdefault(p["passes_per_image"], {})[c["name"]] = p["fd"]
    names = [c["name"] for c in result["curves"]]
    rows = []
    for cost in sorted(by_cost):
        row = by_cost[cost]
        if any(n in row for n in names if n.startswith("DAT")) and any(n in row for n in names if n.startswith("JEM")):
            rows.append({"passes_per_image": cost, **{n: row.get(n) for n in names}})
    return rows


def markdown(result: dict) -> str:
    """The table of every point (and the buffer reference), then the equal-cost rows."""
    f = (lambda v: "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v))
    lines = [f"Sampling cost on {result['dataset']}: {result['protocol']}.", "",
             "| curve | steps | passes / image | FD | precision | recall | density | coverage | class agreement |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in result["curves"]:
        for p in c["points"]:
            lines.append(f"| {c['name']} | {p['steps']} | {f(p['passes_per_image'])} | {f(p['fd'])} | "
                         f"{f(p['precision'])} | {f(p['recall'])} | {f(p.get('density'))} | {f(p.get('coverage'))} | "
                         f"{f(p.get('class_agreement'))} |")
    r = result.get("buffer_reference")
    if r:
        lines.append(f"| {r['name']} | - | - | {f(r['fd'])} | {f(r['precision'])} | {f(r['recall'])} | "
                     f"{f(r.get('density'))} | {f(r.get('coverage'))} | {f(r.get('class_agreement'))} |")
    rows = equal_cost_rows(result)
    if rows:
        names = [c["name"] for c in result["curves"]]
        lines += ["", "FD at equal cost:", "", "| passes / image | " + " | ".join(names) + " |",
                  "|---|" + "---|" * len(names)]
        lines += [f"| {f(r['passes_per_image'])} | " + " | ".join(f(r[n]) for n in names) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write(result: dict, out) -> dict:
    """sampling_cost.json, sampling_cost.md and sampling_cost.png in the folder `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sampling_cost.json").write_text(json.dumps(result, indent=1))
    (out / "sampling_cost.md").write_text(markdown(result))
    series = [{"label": c["name"], "x": [p["passes_per_image"] for p in c["points"]],
               "y": [p["fd"] for p in c["points"]]} for c in result["curves"]]
    r = result.get("buffer_reference")
    hlines = [(r["fd"], r["name"])] if r else []
    line_plot(series, out / "sampling_cost.png", title=f"{result['dataset']}: FD of fresh samples against sampling "
              f"cost ({result['n_samples']} samples, {result['extractor']} features)",
              xlabel="forward + backward passes per image", ylabel=f"FD ({result['extractor']} features)",
              hlines=hlines, logy=True)
    return {"json": out / "sampling_cost.json", "markdown": out / "sampling_cost.md",
            "figure": out / "sampling_cost.png"}


__all__ = ["sampling_cost", "markdown", "equal_cost_rows", "write", "DAT_STEPS", "SGLD_STEPS"]
