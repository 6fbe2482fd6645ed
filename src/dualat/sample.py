"""Generation: descend the energy from seed images with the one PGD engine (method.md section 6).

    generate(model, seeds, labels, steps, step_size)        -> (n, ...) float in [0, 1]   (samplers.py)
    sample(model_or_run, n, classes=..., ...)                -> (x (n, C, H, W) in [0, 1], y (n,))
    sample_to_dir(run, out, n, ...)                          -> the sample.json record (what `dualat sample` does)
"""
from __future__ import annotations

import datetime
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import data_info, load_split, make_seed_source
from .data.seeds_extra import needs_train_set
from .distributed import from_env, session
from .energy import energy
from .errors import DualatError
from .loading import default_output, load_model
from .pgd import eval_mode
from .precision import precision
from .sample_io import png_writer, write_sample_dir
from .sample_options import Opened, SampleOptions, options_of
from .sampler import balanced_labels, default_step_size, default_steps
from .samplers import Draw, generate_batches
from .version import __version__

# a bare nn.Module carries no config: the paper's CIFAR-10 sampler (~35 steps of 0.2) and noise seeds
MODULE_DEFAULT_STEPS = 35
MODULE_DEFAULT_STEP_SIZE = 0.2
TRAJECTORY_ROWS = 10  # rows (samples) of trajectory.png


def open_for_sampling(model_or_run, o: SampleOptions) -> Opened:
    """Open the model (a run directory / checkpoint with o.checkpoint on o.device, or a module used
    where it lives) and fill in the steps, step size, shape and seed source of `o`."""
    steps, step_size, shape = o.steps, o.step_size, o.shape
    if isinstance(model_or_run, torch.nn.Module):
        model, cfg, info = model_or_run, None, None
    else:
        model, cfg, info = load_model(model_or_run, o.checkpoint, device=o.device or "cpu")
    if shape is None and torch.is_tensor(o.seeds):
        shape = tuple(o.seeds.shape[1:])
    if shape is None and cfg is not None:
        shape = data_info(cfg.data)["shape"]
    if shape is None:
        raise DualatError("sampling a bare model needs the input shape: pass shape=(C, H, W) or seed images")
    shape = tuple(int(s) for s in shape)
    with torch.no_grad(), eval_mode(model):
        k = model(torch.zeros(1, *shape, device=next(model.parameters()).device)).shape[1]
    if steps is None:
        steps = MODULE_DEFAULT_STEPS if cfg is None else default_steps(cfg, info.get("final_T"), info.get("sample_steps"))
    if step_size is None:
        step_size = MODULE_DEFAULT_STEP_SIZE if cfg is None else default_step_size(cfg)
    if not (isinstance(steps, int) and steps >= 0):
        raise DualatError(f"steps must be a whole number >= 0, got {steps!r}")
    if not (step_size > 0 and math.isfinite(step_size)):
        raise DualatError(f"step size must be positive, got {step_size!r}")
    return Opened(model, cfg, info, shape, k, steps, float(step_size), seed_source(o.seeds, cfg, shape))


def seed_source(seeds, cfg, shape):
    """A tensor, a SeedSource, or a name: None (the run's data.seeds; noise for a bare model),
    'noise', 'gaussian...', 'patches', 'patches_jitter', 'photos_more', 'mix[:F]', 'mixture:A+B',
    'folder:DIR' -- always the held-out "test" split."""
    if torch.is_tensor(seeds) or hasattr(seeds, "sample"):
        return seeds
    kind = seeds if seeds is not None else (cfg.data.seeds if cfg is not None else "noise")
    folder = cfg.data.seed_folder if cfg is not None else None
    if kind.startswith("folder:"):
        kind, folder = "folder", kind[len("folder:"):]
    train_set = None
    if needs_train_set(kind):
        if cfg is None:
            raise DualatError(f"{kind} seeds are fitted to the run's training set; give a run directory, "
                              "not a bare model, or use seeds='noise'")
        train_set = load_split(cfg.data, "train")
    return make_seed_source(kind, shape, "test", train_set, folder, cfg.seed if cfg is not None else 0)


def _check_counts(n, batch_size, trajectory=None) -> None:
    for name, v in (("n", n), ("batch size", batch_size), ("trajectory interval", trajectory)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise DualatError(f"{name} must be a whole number >= 1, got {v!r}")


def _check_classes(classes, k: int) -> list[int] | None:
    if classes is None or len(classes) == 0:
        return None
    out = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= int(c) < k:
            raise DualatError(f"class {c!r} is out of range: this model has {k} classes, 0..{k - 1}")
        out.append(int(c))
    return out


def drive_generation(m: Opened, o: SampleOptions, on_batch, share=(0, 1), autocast=None):
    """Run generation; on_batch(start, x0, x, y) sees each batch (y: the class conditioned on,
    or the model's prediction when unconditional). With o.trajectory = K returns (parts, steps):
    parts {step: [(start, x)]} of the first rows samples at steps 0, K, 2K, ..., final (see
    _strip), else None. share = (rank, world_size): this process's batches only."""
    model, seeds, n, steps, trajectory, batch_size = m.model, m.seeds, o.n, m.steps, o.trajectory, o.batch_size
    if torch.is_tensor(seeds) and seeds.shape[0] < n:
        raise DualatError(f"{seeds.shape[0]} seed images given for {n} samples")
    labels = balanced_labels(n, m.k, o.classes)
    rows = min(n, TRAJECTORY_ROWS)
    keep = [s for s in range(0, steps + 1, trajectory)] if trajectory else []
    if keep and keep[-1] != steps:
        keep.append(steps)  # the final sample closes the strip
    traj = {}

    def record(start, i, x):  # only the first `rows` samples, only the kept steps
        if i in keep and start < rows:
            traj.setdefault(i, []).append((start, x[: rows - start].detach().float().cpu()))

    device = next(model.parameters()).device
    # unconditional samples still take balanced labels: gaussian seeds then cover every class
    d = Draw(model, n, steps, m.step_size, int(o.seed), labels=labels, seeds=seeds, batch_size=batch_size,
             share=share, autocast=autocast, unconditional=o.unconditional)
    batches = generate_batches(d, record if keep else None)
    total = sum(min(batch_size, n - s) for s in range(share[0] * batch_size, n, share[1] * batch_size))
    with tqdm(total=total, desc="sampling", unit="img", disable=not o.show_progress, dynamic_ncols=True) as bar:
        for start, x0, x in batches:
            y = labels[start:start + x.shape[0]]
            if o.unconditional:
                with torch.no_grad(), eval_mode(model):
                    y = model(x.to(device)).argmax(1).cpu()
            on_batch(start, x0, x, y)
            bar.update(x.shape[0])
    return (traj, keep) if keep else None


def _strip(parts: list[dict], keep: list[int]) -> torch.Tensor:
    """(rows, len(keep), ...) trajectory strip from the {step: [(start, x)]} of one or more processes."""
    rows = []
    for i in keep:
        pieces = sorted((p for part in parts for p in part.get(i, [])), key=lambda p: p[0])
        rows.append(torch.cat([x for _, x in pieces])[:TRAJECTORY_ROWS])
    return torch.stack(rows, dim=1)


def sample(model_or_run, options: SampleOptions | None = None, **settings):
    """Generate n samples; returns (x float32 (n, C, H, W) in [0, 1], y int64 (n,)).

    The settings: a SampleOptions, or its fields as keywords (sample(run, n=16, seed=3)).
    model_or_run: a run directory / checkpoint file (opened with `checkpoint`, EMA by default) or
    an nn.Module taking [0, 1] inputs. Defaults from a run: steps = the run's final curriculum T
    (else stage2.t_max), step size = 2 x stage2.step_size, seeds = the held-out ("test") split of
    data.seeds. For a bare module: 35 steps of 0.2 (the paper's CIFAR-10 sampler) from uniform
    noise; `shape` (C, H, W) is needed unless seed images are given.
    classes: the classes to cycle through (default all); unconditional: ascend logsumexp, and y is
    then the model's prediction of each sample. seeds: None, 'noise', 'gaussian', 'patches',
    'folder:DIR', a SeedSource or a tensor (>= n, C, H, W). The same seed (and batch_size) gives
    the same samples. device: where a run's model is opened (a bare module is used where it is).
    amp: None (a run's own `amp` setting; float32 for a bare module), False, True or "auto"
    (dualat.precision): the arithmetic of the sampler's model forwards.
    """
    o = options_of(options, settings)
    _check_counts(o.n, o.batch_size)
    m = open_for_sampling(model_or_run, o)
    _, autocast = run_precision(m.model, m.cfg, o.amp)
    o = replace(o, classes=_check_classes(o.classes, m.k))
    xs, ys = [], []
    drive_generation(m, o, lambda start, x0, x, y: (xs.append(x), ys.append(y)), autocast=autocast)
    return torch.cat(xs), torch.cat(ys)


def run_precision(model, cfg, amp):
    """(dtype name, autocast factory or None): `amp`, else the run's setting (float32 for a bare module)."""
    setting = amp if amp is not None else (cfg.amp if cfg is not None else False)
    return precision(setting, next(model.parameters()).device)


def sample_to_dir(source, out=None, options: SampleOptions | None = None, **settings) -> dict:
    """`dualat sample`: generate from a run directory / checkpoint and write into `out`:

    grid.png (one row per class, up to 10 each), samples.npz (x uint8 (n, C, H, W) = round(255 x),
    y int64 (n,)), png/<index>_y<class>.png with `png`, trajectory.png with `trajectory` = K
    (rows = the first 10 samples, columns = steps 0, K, 2K, ..., final) and sample.json (every
    setting). Only uint8 copies of the samples are kept, so memory is n x C x H x W bytes.
    The settings: a SampleOptions or its fields as keywords (show_progress defaults to True here).
    Returns the sample.json record.

    Under torchrun the batches are shared round-robin between the processes (each sample is the
    one a single process makes: every process draws every batch's seeds) and gathered; rank 0
    writes the files (each process its own png/ files). amp: as for `sample`; sample.json names
    the arithmetic used (`compute_dtype`).
    """
    o = options_of(options, settings, show_progress=True)
    _check_counts(o.n, o.batch_size, o.trajectory)
    with session(from_env(), o.device or "cpu") as dist:
        return _sample_to_dir(source, out, replace(o, device=dist.device if dist.enabled else o.device), dist)


def _sample_to_dir(source, out, o: SampleOptions, dist) -> dict:
    m = open_for_sampling(source, o)
    cfg, k, shape = m.cfg, m.k, m.shape
    o = replace(o, classes=_check_classes(o.classes, k))
    dtype, autocast = run_precision(m.model, cfg, o.amp)
    image = len(shape) == 3
    if not image and (o.png or o.trajectory):
        raise DualatError(f"{cfg.data.name} items are points of shape {shape}, not images: drop --png / --trajectory")
    out = dist.broadcast(Path(out) if out is not None else default_output(source, "samples", o.checkpoint))
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    c = collect(m, o, dist, png_writer(out) if o.png else None, autocast)
    if c is None:  # a process other than rank 0: rank 0 writes
        return dist.broadcast(None)
    n, seeds = o.n, o.seeds
    record = {
        "n": n, "classes": o.classes if o.classes is not None else list(range(k)), "num_classes": k,
        "steps": m.steps, "step_size": m.step_size, "unconditional": o.unconditional,
        "objective": "logsumexp (unconditional)" if o.unconditional else "class_logit f_y (class-conditional)",
        "y": "model prediction of each sample" if o.unconditional else "class conditioned on",
        "seeds": seeds if isinstance(seeds, str) else repr(seeds) if seeds is not None else cfg.data.seeds,
        "seed_split": "test", "seed": o.seed, "batch_size": o.batch_size,
        "checkpoint": m.info, "dataset": cfg.data.name if cfg is not None else None,
        "trajectory_every": o.trajectory, "trajectory_steps": c["trajectory_steps"],
        "mean_logsumexp_seeds": c["e_seed"] / n, "mean_logsumexp_samples": c["e_sample"] / n,
        "npz_format": ("x uint8 (N, C, H, W) = round(255 * sample)" if image else f"x float32 (N, {shape[0]})")
        + ", y int64 (N,)",
        "torch": torch.__version__, "dualat": __version__, "command": o.command if o.command is not None else sys.argv,
        "time": datetime.datetime.now().isoformat(timespec="seconds"), "out": str(out), "files": None,
        "processes": dist.world_size, "compute_dtype": dtype,
    }
    return dist.broadcast(write_sample_dir(out, c, k, shape, o.png, record))


def collect(m: Opened, o: SampleOptions, dist, on_png=None, autocast=None) -> dict | None:
    """Generate o.n samples (this process's batches under torchrun) and gather them on rank 0:
    dict(x (n, ...) uint8 images / float32 points, y, e_seed / e_sample (sums of logsumexp f over
    seeds / samples), strip (rows, steps, ...) or None, trajectory_steps); None on other ranks.
    on_png(start, x, y) sees each batch as it is made (the per-sample PNG files)."""
    model, shape, n = m.model, m.shape, o.n
    image = len(shape) == 3
    # images are kept as the uint8 the PNGs hold; points (toy2d) as float32
    x8 = np.zeros((n, *shape), dtype=np.uint8 if image else np.float32)
    y_all = np.zeros(n, dtype=np.int64)
    e_seed, e_sample = [], []  # per-batch sums of logsumexp, to report that sampling lowered the energy
    written = []  # (start, stop) of this process's batches

    def on_batch(start, x0, x, y):
        stop = start + x.shape[0]
        written.append((start, stop))
        x8[start:stop] = x.clamp(0, 1).mul(255).round().to(torch.uint8).numpy() if image else x.numpy()
        y_all[start:stop] = y.numpy()
        with torch.no_grad(), eval_mode(model):
            dev = next(model.parameters()).device
            e_seed.append(-energy(model(x0.to(dev))).sum().item())
            e_sample.append(-energy(model(x.to(dev))).sum().item())
        if on_png is not None:
            on_png(start, x, y)

    traj = drive_generation(m, replace(o, show_progress=o.show_progress and dist.is_main), on_batch,
                            share=(dist.rank, dist.world_size), autocast=autocast)
    parts = dist.gather_to_main({"chunks": [(a, x8[a:b], y_all[a:b]) for a, b in written],
                                 "e_seed": sum(e_seed), "e_sample": sum(e_sample), "traj": traj[0] if traj else {}})
    if not dist.is_main:
        return None
    for part in parts[1:]:
        for a, xs, ys in part["chunks"]:
            x8[a:a + len(ys)], y_all[a:a + len(ys)] = xs, ys
    return {"x": x8, "y": y_all, "e_seed": sum(p["e_seed"] for p in parts), "e_sample": sum(p["e_sample"] for p in parts),
            "strip": _strip([part["traj"] for part in parts], traj[1]) if traj is not None else None,
            "trajectory_steps": traj[1] if traj is not None else None}


__all__ = ["SampleOptions", "sample", "sample_to_dir"]
