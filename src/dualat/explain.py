"""Counterfactual explanations (method.md section 7): the smallest visible change that makes the
model more sure of a target class, found by targeted PGD inside L2 balls of growing radius.

    explain(model, x, target, radii=..., steps=300)   -> Explanation (tensors, (R, N, ...))
    explain_to_dir(run, images, target, ...)          -> the explain.json record (`dualat explain`)

Each radius is an independent run of the one PGD engine from the original image (objective
`target_confidence` = log p(target|x), L2-normalised steps with momentum 0.9, projection onto the
ball and the [0, 1] box, no momentum by default). All radii and inputs share one batch: a per-sample-radius L2 threat.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import DualatError
from .pgd import L2Ball, eval_mode, pgd

PAPER_RADII = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)  # CIFAR-10, d = 3072, trained at L2 eps 0.5
PAPER_DIM, PAPER_TRAIN_EPS = 3072, 0.5
DEFAULT_STEPS = 300
# Measured on a digits DAT model (12 test images toward class y+3, radii 0.5..3, 300 steps): a step
# of 5 x radius / steps ends higher than 2.5 x (mean p at r=1: 0.20 vs 0.18; r=1.5: 0.91 vs 0.89)
# and as high as 10 x; momentum 0.9 was no better than none (0.90 vs 0.91), so it is off by
# default and stays available. With 5 x the iterate can cross its ball 2.5 times: it reaches the
# sphere early, then slides along it.
DEFAULT_MOMENTUM = 0.0
STEP_FACTOR = 5.0


def default_radii(shape, train_eps: float | None = None) -> list[float]:
    """Six radii: the paper's CIFAR sweep 0.5..3.0, rescaled and rounded to 2 decimals.

    With the L2 radius a model was adversarially trained at (`train_eps`), the sweep keeps the
    paper's ratio to it (CIFAR was trained at 0.5, so radii = 1..6 x train_eps): a robust model
    barely moves inside its training ball, so the sweep must reach beyond it. Without it the
    sweep keeps the paper's per-pixel RMS change: radii x sqrt(d / 3072), d = C x H x W.
    """
    if train_eps:
        scale = train_eps / PAPER_TRAIN_EPS
    else:
        scale = math.sqrt(math.prod(shape) / PAPER_DIM)
    return [max(0.01, round(r * scale, 2)) for r in PAPER_RADII]


@dataclass
class Explanation:
    """Counterfactuals of N inputs for R radii.

    radii (R,); targets (N,) int64; counterfactuals (R, N, C, H, W) in [0, 1]; confidences (R, N)
    = p(target | counterfactual); distances (R, N) = ||counterfactual - x||_2 (<= radius);
    predictions (R, N) = argmax class of each counterfactual; original_confidence (N,) =
    p(target | x); original_prediction (N,) and original_pred_confidence (N,) = argmax of x and its p.
    """
    radii: torch.Tensor
    targets: torch.Tensor
    counterfactuals: torch.Tensor
    confidences: torch.Tensor
    distances: torch.Tensor
    predictions: torch.Tensor
    original_confidence: torch.Tensor
    original_prediction: torch.Tensor
    original_pred_confidence: torch.Tensor


@torch.no_grad()
def _probs(model, x, batch_size, device):
    with eval_mode(model):
        return torch.cat([torch.softmax(model(x[i:i + batch_size].to(device)).float(), 1).cpu()
                          for i in range(0, x.shape[0], batch_size)])


def explain(model, x: torch.Tensor, target, radii=None, steps: int = DEFAULT_STEPS,
            step_factor: float = STEP_FACTOR, momentum: float = DEFAULT_MOMENTUM, batch_size: int = 256,
            device=None, show_progress: bool = False, autocast=None) -> Explanation:
    """Counterfactuals of x (N, C, H, W) in [0, 1] toward `target`: a class index, (N,) indices, or
    'predicted' (the model's own prediction of each input).

    radii: L2 radii (default `default_radii(x.shape[1:])`); steps: PGD iterations per radius;
    each step moves step_factor x radius / steps along the momentum-averaged normalised gradient
    of log p(target|x) (momentum > 0 averages the normalised gradients; off by default).
    autocast: a context-manager factory (dualat.precision) for the PGD forwards; the reported
    confidences are always computed in float32.
    """
    from tqdm.auto import tqdm
    device = device or next(model.parameters()).device
    x = x.detach().float().cpu()
    n = x.shape[0]
    p0 = _probs(model, x, batch_size, device)
    k = p0.shape[1]
    if isinstance(target, str):
        if target != "predicted":
            raise DualatError(f"target must be a class index, a tensor of them or 'predicted', got {target!r}")
        t = p0.argmax(1)
    else:
        t = torch.as_tensor(target, dtype=torch.long).cpu().expand(n).clone()
    if ((t < 0) | (t >= k)).any():
        raise DualatError(f"target class {int(t[(t < 0) | (t >= k)][0])} is out of range: this model has "
                          f"{k} classes, 0..{k - 1}")
    radii = torch.tensor(default_radii(x.shape[1:]) if radii is None else list(radii), dtype=torch.float32)
    if radii.numel() == 0 or not bool((radii > 0).all()):
        raise DualatError(f"radii must be positive numbers, got {radii.tolist()}")
    if not (isinstance(steps, int) and steps >= 1):
        raise DualatError(f"steps must be a whole number >= 1, got {steps!r}")
    r_all = radii.repeat_interleave(n)                     # (R*N,): radius-major, as the output
    idx = torch.arange(n).repeat(len(radii))
    out = torch.empty(len(r_all), *x.shape[1:])
    starts = range(0, len(r_all), batch_size)
    # the bar counts PGD steps of all batches: one batch of 300 steps can take minutes on a CPU
    with eval_mode(model), tqdm(total=len(starts) * steps, desc=f"counterfactuals ({len(r_all)} x {steps} steps)",
                                unit="step", disable=not show_progress, dynamic_ncols=True, mininterval=1.0) as bar:
        for s in starts:
            sl = slice(s, s + batch_size)
            xb = x[idx[sl]].to(device)
            r = r_all[sl].to(device)
            # per-sample radius and step: each step moves step_factor x radius / steps
            out[sl] = pgd(model, xb, t[idx[sl]].to(device), objective="target_confidence", threat=L2Ball(r),
                          steps=steps, step_size=step_factor / steps * r, momentum=momentum,
                          autocast=autocast, callback=lambda i, _x: bar.update(1)).cpu()
    p = _probs(model, out, batch_size, device)
    shape = (len(radii), n)
    return Explanation(
        radii=radii, targets=t, counterfactuals=out.view(*shape, *x.shape[1:]),
        confidences=p.gather(1, t[idx].view(-1, 1)).view(shape),
        distances=(out - x[idx]).flatten(1).norm(dim=1).view(shape),
        predictions=p.argmax(1).view(shape), original_confidence=p0.gather(1, t.view(-1, 1)).squeeze(1),
        original_prediction=p0.argmax(1), original_pred_confidence=p0.max(1).values)


def _load_inputs(spec: str, model, open_test, shape, n: int, batch_size: int, device):
    """--images SPEC -> (x (M, *shape) in [0, 1], labels (M,) with -1 = unknown, names, sources).

    SPEC: 'misclassified' (the first n test images the model gets wrong), or comma-separated
    test-set indices and/or image file paths (any size or colour mode: converted to the model's
    channels, shorter side resized to its input size, centre-cropped). open_test() -> the test set,
    read only when test images are asked for.
    """
    from pathlib import Path

    from .data.folder import load_image, resize_center_crop
    if spec.strip() == "misclassified":
        if not (isinstance(n, int) and n >= 1):
            raise DualatError(f"--n must be a whole number >= 1, got {n!r}")
        found, test_set = [], open_test()
        for s in range(0, len(test_set), batch_size):
            xb, yb = test_set.batch(torch.arange(s, min(s + batch_size, len(test_set))))
            wrong = (_probs(model, xb, batch_size, device).argmax(1) != yb).nonzero().view(-1) + s
            found += wrong.tolist()
            if len(found) >= n:
                break
        if not found:
            raise DualatError("the model classifies every test image correctly; give --images indices or files")
        found = found[:n]
        x, y = test_set.batch(torch.tensor(found))
        return x.float(), y.long(), [f"test{i}" for i in found], [f"test:{i}" for i in found]
    xs, ys, names, sources = [], [], [], []
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        if item.lstrip("-").isdigit():
            i, test_set = int(item), open_test()
            if not 0 <= i < len(test_set):
                raise DualatError(f"test index {i} is out of range: the test set has {len(test_set)} images, "
                                  f"0..{len(test_set) - 1}")
            xi, yi = test_set.batch(torch.tensor([i]))
            xs.append(xi[0].float()), ys.append(int(yi[0])), names.append(f"test{i}"), sources.append(f"test:{i}")
            continue
        path = Path(item)
        if not path.is_file():
            raise DualatError(f"--images: {item!r} is neither a test-set index nor an image file "
                              "(give e.g. 0,5,17, misclassified, or paths)")
        xs.append(resize_center_crop(load_image(path, shape[0]), shape[-1]))
        ys.append(-1), names.append(f"{len(names):03d}_{path.stem}"), sources.append(str(path))
    if not xs:
        raise DualatError("--images is empty; give test indices (0,5,17), misclassified, or image files")
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long), names, sources


def _targets(spec: str | None, label: int, pred: int, k: int) -> list[tuple[str, int]]:
    """(kind, class) pairs for one input. spec: comma-separated class indices, 'true', 'predicted',
    'all'; default 'true,predicted' with a label, else 'predicted'. Duplicate classes are dropped."""
    tokens = [t.strip() for t in (spec or ("true,predicted" if label >= 0 else "predicted")).split(",") if t.strip()]
    pairs = []
    for t in tokens:
        if t == "true":
            if label < 0:
                raise DualatError("--target true needs a label; image files have none (use predicted, all or a class)")
            pairs.append(("true", label))
        elif t == "predicted":
            pairs.append(("predicted", pred))
        elif t == "all":
            pairs += [("all", c) for c in range(k)]
        elif t.lstrip("-").isdigit():
            if not 0 <= int(t) < k:
                raise DualatError(f"target class {t} is out of range: this model has {k} classes, 0..{k - 1}")
            pairs.append(("class", int(t)))
        else:
            raise DualatError(f"--target takes class indices, true, predicted or all; got {t!r}")
    seen, out = set(), []
    for kind, c in pairs:
        if c not in seen:
            seen.add(c), out.append((kind, c))
    return out


def _figure(x, cfs, confs, radii, targets, title, class_names):
    """One row per target: original | counterfactual per radius (p(target) above) | signed
    difference of the largest radius (red = brighter, blue = darker, white = unchanged)."""
    import numpy as np
    from PIL import Image, ImageDraw
    c, h, w = x.shape
    up = max(1, math.ceil(72 / max(h, w)))  # cells of at least 72 px so the text fits
    cw, ch, head, top = w * up, h * up, 24, 14
    cols = len(radii) + 2
    canvas = Image.new("RGB", (cols * (cw + 4) + 4, top + len(targets) * (ch + head + 4) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), title, fill="black")

    def tile(img):  # (C, H, W) in [0, 1] -> RGB PIL tile
        a = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        return Image.fromarray(a[..., 0] if c == 1 else a).convert("RGB").resize((cw, ch), Image.NEAREST)

    for row, (kind, t) in enumerate(targets):
        y0 = top + row * (ch + head + 4)
        name = class_names[t] if class_names else str(t)
        tag = f" ({kind[:4]})" if kind in ("true", "predicted") else ""  # all / class: the name says it
        cells = [(tile(x), f"to {name[:6]}{tag}", f"p={confs[0][row]:.3f}")]
        cells += [(tile(cfs[i][row]), f"r={r:.2f}", f"p={confs[i + 1][row]:.3f}") for i, r in enumerate(radii)]
        d = (cfs[-1][row] - x).sum(0)
        a = (d.abs() / (d.abs().max() + 1e-12)).numpy()
        rgb = np.full((h, w, 3), 255.0)
        rgb[..., 0] -= np.where(d.numpy() < 0, 255 * a, 0)   # darker -> blue
        rgb[..., 1] -= 255 * a
        rgb[..., 2] -= np.where(d.numpy() > 0, 255 * a, 0)   # brighter -> red
        diff = Image.fromarray(rgb.round().astype(np.uint8)).resize((cw, ch), Image.NEAREST)
        cells.append((diff, "difference", f"r={radii[-1]:.2f}"))
        for col, (img, l1, l2) in enumerate(cells):
            x0 = 4 + col * (cw + 4)
            draw.text((x0, y0), l1, fill="black")
            draw.text((x0, y0 + 11), l2, fill="black")
            canvas.paste(img, (x0, y0 + head))
    return canvas


def explain_to_dir(source, images: str, target: str | None = None, radii=None, steps: int = DEFAULT_STEPS,
                   n: int = 10, checkpoint: str = "ema", out=None, step_factor: float = STEP_FACTOR,
                   momentum: float = DEFAULT_MOMENTUM, batch_size: int = 256, device=None,
                   show_progress: bool = True, command=None, amp=None) -> dict:
    """`dualat explain`: counterfactuals of test images / files from a run; writes one figure per
    input (explain_<name>.png) and explain.json into `out` (default RUN_DIR/explain-<checkpoint>-<time>).

    Default radii: `default_radii` with the run's L2 training radius (stage2.attack.eps) when it
    trained under L2. amp: None (the run's own setting), False, True or "auto": the arithmetic of
    the counterfactual PGD (explain.json's `compute_dtype`). Returns the explain.json record.
    """
    import datetime
    import json
    import sys
    from pathlib import Path

    from functools import lru_cache

    from .data import dataset_info, load_dataset
    from .images import save_png
    from .loading import load_model
    model, cfg, info = load_model(source, checkpoint, device=device or "cpu")
    d = cfg.data
    kw = dict(root=d.root, image_size=d.image_size, channels=d.channels, num_classes=d.num_classes)
    open_test = lru_cache(maxsize=1)(lambda: load_dataset(d.name, "test", **kw))
    shape = dataset_info(d.name, **kw)["shape"] or open_test().shape
    if len(shape) != 3:
        raise DualatError(f"counterfactual figures need images; {d.name} items have shape {shape}")
    dev = next(model.parameters()).device
    from .precision import precision
    dtype, autocast = precision(cfg.amp if amp is None else amp, dev)
    x, labels, names, sources = _load_inputs(images, model, open_test, tuple(shape), n, batch_size, dev)
    p0 = _probs(model, x, batch_size, dev)
    k = p0.shape[1]
    pred = p0.argmax(1)
    pairs = [(i, kind, c) for i in range(len(x)) for kind, c in _targets(target, int(labels[i]), int(pred[i]), k)]
    a = cfg.stage2.attack
    radii = list(radii) if radii is not None else default_radii(shape, a.eps if a.norm.upper() == "L2" else None)
    e = explain(model, x[[i for i, _, _ in pairs]], torch.tensor([c for _, _, c in pairs]), radii, steps,
                step_factor, momentum, batch_size, dev, show_progress, autocast)
    from .loading import output_base
    out = Path(out) if out is not None else (
        output_base(source) / f"explain-{checkpoint}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)
    names_k = getattr(open_test(), "classes", None) if any(label >= 0 for label in labels.tolist()) else None
    entries = []
    for i in range(len(x)):
        rows = [j for j, (ii, _, _) in enumerate(pairs) if ii == i]
        label = int(labels[i])
        title = (f"{sources[i]}: " + (f"label {label}, " if label >= 0 else "")
                 + f"predicted {int(pred[i])} (p={float(p0[i, pred[i]]):.3f})")
        confs = [e.original_confidence[rows].tolist()] + [e.confidences[r][rows].tolist() for r in range(len(radii))]
        fig = _figure(x[i], [e.counterfactuals[r][rows] for r in range(len(radii))], confs, radii,
                      [(pairs[j][1], pairs[j][2]) for j in rows], title, names_k)
        save_png(fig, out / f"explain_{names[i]}.png")
        entries.append({
            "input": sources[i], "label": label if label >= 0 else None, "prediction": int(pred[i]),
            "confidence": float(p0[i, pred[i]]), "figure": f"explain_{names[i]}.png",
            "targets": [{"target": pairs[j][2], "kind": pairs[j][1],
                         "original_confidence": float(e.original_confidence[j]),
                         "radii": [{"radius": float(r), "confidence": float(e.confidences[ri, j]),
                                    "distance": float(e.distances[ri, j]), "prediction": int(e.predictions[ri, j])}
                                   for ri, r in enumerate(radii)]} for j in rows]})
    record = {"checkpoint": info, "dataset": d.name, "images": images, "target": target or "default",
              "radii": [float(r) for r in radii], "steps": steps,
              "step": f"{step_factor:g} x radius / steps, L2-normalised gradient of log p(target|x)",
              "momentum": momentum, "torch": torch.__version__,
              "compute_dtype": {"counterfactuals": dtype, "confidences": "float32"},
              "command": command if command is not None else sys.argv,
              "time": datetime.datetime.now().isoformat(timespec="seconds"), "out": str(out), "inputs": entries}
    (out / "explain.json").write_text(json.dumps(record, indent=1))
    return record


__all__ = ["explain", "Explanation", "default_radii", "explain_to_dir"]
