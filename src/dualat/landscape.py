"""`dualat landscape RUN_DIR [MORE_RUNS...]`: the energy landscape of 2-D (toy2d) models, drawn.

For each model (panel) the figure shows, over the square [0, 1]^2:

* the energy E(x) = -logsumexp f(x) as a heat map (dark = low energy, bright = high; each panel
  scaled between its own 2nd and 98th percentile, since energies are defined up to a constant);
* the per-class decision regions (argmax f(x)), drawn as white boundary lines;
* training points coloured by class;
* sampling trajectories: seeds (hollow) -> samples (filled, the conditioned class's colour),
  drawn by the library's own sampler (`samplers.generate_batches`, i.e. the one PGD engine), with
  the same seeds, steps and step size in every panel.

A DAT run directory gives two panels, its stage 1 (adversarial training only) and its DAT EMA
weights; every further run directory (e.g. `method=plain`, `method=jem`) adds its own model.
Besides the PNG, `landscape.json` records per panel the numbers the picture shows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .data import load_split
from .energy import energy
from .errors import DualatError
from .methods import method_of
from .images import label_font
from .loading import load_model, run_method
from .rundir import RunDir
from .sample import open_for_sampling
from .sample_options import SampleOptions
from .sampler import balanced_labels
from .samplers import Draw, generate_batches
from .ui import progress

CLASS_COLOURS = [(230, 50, 50), (255, 150, 20), (40, 200, 255), (240, 80, 230), (120, 230, 90), (250, 250, 250)]
CORNERS = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)]
DEFAULT_NAME = "landscape.png"  # in the first run directory, when no --out is given
# viridis-like anchors, dark purple (low energy) -> yellow (high energy)
_ANCHORS = np.array([(68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
                     (31, 158, 137), (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37)], float)


def colormap(t: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB (..., 3), low = dark purple, high = yellow."""
    t = np.clip(t, 0.0, 1.0) * (len(_ANCHORS) - 1)
    i = np.minimum(t.astype(int), len(_ANCHORS) - 2)
    f = (t - i)[..., None]
    return (_ANCHORS[i] * (1 - f) + _ANCHORS[i + 1] * f).round().astype(np.uint8)


def panels_of(runs, checkpoints=None) -> list[tuple[str, str, str]]:
    """(source, checkpoint, label) per panel: a DAT run gives stage 1 and its EMA weights, any
    other run (plain, JEM) its own model. `checkpoints` overrides the first run's list."""
    out = []
    for i, run in enumerate(runs):
        run = Path(run)
        if not (run / RunDir.CONFIG).is_file():
            raise DualatError(f"{run} is not a run directory (no config.yaml); give folders `dualat train` wrote")
        method = method_of(run_method(run))
        if i == 0 and checkpoints:
            chosen = list(checkpoints)
        else:  # "ema": load_model maps it to the method's own weights
            chosen = [c for c in method.panels if (run / "stage1.pt").is_file() or c != "stage1"]
        for ck in chosen:
            name = {"stage1": "stage 1 (adversarial training)", "ema": method.label}.get(ck, ck)
            if len(method.panels) == 1:
                name = method.label
            out.append((str(run), ck, f"{name}: {run.name}"))
    return out


def energy_grid(model, resolution: int):
    """(E (R, R), argmax class (R, R)) on the pixel centres of [0, 1]^2; row 0 is y = 1 (top)."""
    c = (np.arange(resolution) + 0.5) / resolution
    xx, yy = np.meshgrid(c, c[::-1])
    pts = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], 1)).float()
    with torch.no_grad():
        logits = torch.cat([model(p) for p in pts.split(8192)])
    e = energy(logits)
    return e.view(resolution, resolution).numpy(), logits.argmax(1).view(resolution, resolution).numpy()


def energy_at(model, pts: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return energy(model(pts.float())).numpy()


def trajectories(model, seeds, labels, steps: int, step_size: float):
    """(paths (n, steps + 1, 2), samples (n, 2)) from the library's sampler (the one PGD engine)."""
    path = {}
    d = Draw(model, len(labels), steps, step_size, None, labels=labels, seeds=seeds, batch_size=256)
    batches = generate_batches(d, step_callback=lambda s, i, x: path.__setitem__(i, x.detach().cpu().clone()))
    x = torch.cat([x for _, _, x in batches])
    return torch.stack([path[i] for i in sorted(path)], 1).numpy(), x.numpy()


def panel_numbers(model, train_x, train_y, e, samples, labels) -> dict:
    """What the panel shows, as numbers: energies on the data and in the corners, where the
    lowest energy lies, how much of the square is below the median training point, and where
    the samples landed (nearest training point's distance and class)."""
    r = e.shape[0]
    e_train = energy_at(model, train_x)
    e_corner = energy_at(model, torch.tensor(CORNERS))
    lo = np.unravel_index(np.argmin(e), e.shape)
    d = torch.cdist(torch.from_numpy(samples).float(), train_x.float())
    near, idx = d.min(1)
    return {
        "energy_train_mean": float(e_train.mean()), "energy_train_median": float(np.median(e_train)),
        "energy_corners": [float(v) for v in e_corner], "energy_corners_mean": float(e_corner.mean()),
        "energy_per_class": [float(e_train[(train_y == c).numpy()].mean()) for c in range(int(train_y.max()) + 1)],
        "energy_min_at": [round((lo[1] + 0.5) / r, 3), round(1 - (lo[0] + 0.5) / r, 3)],
        "area_below_median_train": float((e < np.median(e_train)).mean()),
        "samples_near_data": float((near < 0.05).float().mean()),
        "sample_distance_median": float(near.median()),
        "samples_on_own_class": float((train_y[idx] == labels).float().mean()),
    }




def draw_panel(e, cls, train_x, train_y, paths, samples, labels, title: str, note: str, size: int) -> Image.Image:
    lo, hi = np.percentile(e, 2), np.percentile(e, 98)
    rgb = colormap((e - lo) / max(hi - lo, 1e-12))
    edge = np.zeros(cls.shape, bool)
    edge[:, 1:] |= cls[:, 1:] != cls[:, :-1]
    edge[1:, :] |= cls[1:, :] != cls[:-1, :]
    rgb[edge] = 255
    img = Image.fromarray(rgb).resize((size, size), Image.NEAREST)
    d = ImageDraw.Draw(img)

    def px(p):
        return float(p[0]) * size, (1 - float(p[1])) * size

    for p, k in zip(train_x.numpy(), train_y.numpy()):
        a, b = px(p)
        d.ellipse([a - 1.5, b - 1.5, a + 1.5, b + 1.5], fill=CLASS_COLOURS[k % len(CLASS_COLOURS)])
    for path, s, k in zip(paths, samples, labels.numpy()):
        d.line([px(q) for q in path], fill=(255, 255, 255), width=1)
        a, b = px(path[0])
        d.ellipse([a - 3, b - 3, a + 3, b + 3], outline=(255, 255, 255), width=1)
        a, b = px(s)
        d.ellipse([a - 4, b - 4, a + 4, b + 4], fill=CLASS_COLOURS[k % len(CLASS_COLOURS)], outline=(0, 0, 0))
    head = Image.new("RGB", (size, 44), (255, 255, 255))
    hd = ImageDraw.Draw(head)
    hd.text((4, 3), title, fill=(0, 0, 0), font=label_font(13))
    hd.text((4, 24), note, fill=(60, 60, 60), font=label_font(11))
    out = Image.new("RGB", (size, size + 44), (255, 255, 255))
    out.paste(head, (0, 0))
    out.paste(img, (0, 44))
    return out


def _legend(width: int, classes: list[str]) -> Image.Image:
    img = Image.new("RGB", (width, 40), (255, 255, 255))
    d = ImageDraw.Draw(img)
    f = label_font(11)
    img.paste(Image.fromarray(colormap(np.linspace(0, 1, 100))[None].repeat(10, 0)), (6, 4))
    d.text((112, 2), "energy -logsumexp f(x): low -> high, each panel on its own scale;  white lines: decision boundaries",
           fill=0, font=f)
    x = 6
    for k, name in enumerate(classes):
        d.ellipse([x, 25, x + 8, 33], fill=CLASS_COLOURS[k % len(CLASS_COLOURS)], outline=0)
        d.text((x + 11, 22), name, fill=0, font=f)
        x += 20 + int(d.textlength(name, f))
    d.text((x + 4, 22), "data;  o seed, white path, big dot: sample", fill=0, font=f)
    return img


@dataclass
class LandscapeOptions:
    """Every setting of `landscape` / `dualat landscape` (the CLI builds it)."""
    checkpoints: list[str] | None = None    # the first run's panels (default: its method's)
    resolution: int = 160                   # energy grid points per side
    n_paths: int = 12                       # sampler trajectories drawn
    steps: int | None = None                # default: the first run's final T
    step_size: float | None = None          # default: 2 x its stage2.step_size
    seed: int = 0
    n_points: int = 600                     # training points drawn
    size: int = 320                         # pixels per panel
    show_progress: bool = False


def landscape(runs, out=None, options: LandscapeOptions | None = None, **settings) -> dict:
    """Draw the landscape figure of one or more toy2d runs (see the module docstring).

    runs: a run directory or a list of them (the first sets the sampler: its final T and 2 x its
    stage2.step_size unless steps / step_size are given). The settings: a LandscapeOptions or its
    fields as keywords. Writes `out` (default FIRST_RUN/landscape.png) and landscape.json beside
    it; returns that record.
    """
    if options is not None and settings:
        raise TypeError("give LandscapeOptions or keywords, not both")
    o = options if options is not None else LandscapeOptions(**settings)
    resolution, n_paths, seed, n_points, size = o.resolution, o.n_paths, o.seed, o.n_points, o.size
    runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
    if not runs:
        raise DualatError("give at least one toy2d run directory")
    for v, what in ((resolution, "resolution"), (n_paths, "number of trajectories"), (n_points, "number of points")):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise DualatError(f"{what} must be a whole number >= 1, got {v!r}")
    panels = panels_of(runs, o.checkpoints)
    first = open_for_sampling(panels[0][0], SampleOptions(checkpoint=panels[0][1], steps=o.steps,
                                                          step_size=o.step_size, device="cpu"))
    cfg0, shape, k, steps, step_size, src = (first.cfg, first.shape, first.k, first.steps, first.step_size,
                                             first.seeds)
    if tuple(shape) != (2,):
        raise DualatError(f"{runs[0]} was trained on {cfg0.data.name} (inputs {tuple(shape)}); "
                          "the landscape is drawn for 2-D data: train with `dualat train toy2d`")
    train = load_split(cfg0.data, "train")
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(train.y), generator=g)[:n_points]
    train_x, train_y = train.x.float(), train.y
    labels = balanced_labels(n_paths, k)
    seeds = src.sample(n_paths, labels, torch.Generator().manual_seed(seed))
    out = Path(out) if out else Path(runs[0]) / DEFAULT_NAME
    images, records = [], []
    bar = progress(len(panels), 0, "landscape", o.show_progress)
    for source, ck, label in panels:
        model, cfg, info = load_model(source, ck)
        if cfg.data.name != cfg0.data.name:
            raise DualatError(f"{source} was trained on {cfg.data.name}, {runs[0]} on {cfg0.data.name}: "
                              "panels must share their data")
        e, cls = energy_grid(model, resolution)
        paths, samples = trajectories(model, seeds, labels, steps, step_size)
        nums = panel_numbers(model, train_x, train_y, e, samples, labels)
        note = (f"E data {nums['energy_train_mean']:.2f}, corners {nums['energy_corners_mean']:.2f}; "
                f"samples near data {100 * nums['samples_near_data']:.0f}%")
        images.append(draw_panel(e, cls, train_x[pick], train_y[pick], paths, samples, labels, label, note, size))
        records.append({"label": label, "source": source, "checkpoint": info, **nums})
        bar.update(1)
    bar.close()
    fig = Image.new("RGB", (len(images) * (size + 8) - 8, size + 44 + 40), (255, 255, 255))
    for i, im in enumerate(images):
        fig.paste(im, (i * (size + 8), 0))
    fig.paste(_legend(fig.width, train.classes), (0, size + 44))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.save(out)
    record = {"out": str(out), "sampler": {"steps": steps, "step_size": step_size, "seeds": cfg0.data.seeds,
                                           "seed_split": "test", "n": n_paths, "seed": seed},
              "resolution": resolution, "near_data": "nearest training point closer than 0.05",
              "panels": records}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    return record


__all__ = ["LandscapeOptions", "landscape", "panels_of", "energy_grid", "colormap"]
