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
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from .data import data_info, load_split
from .errors import DualatError
from .explain_io import load_inputs, parse_targets, write_explanations
from .explain_options import DEFAULT_MOMENTUM, DEFAULT_STEPS, STEP_FACTOR, ExplainOptions
from .loading import default_output, load_model
from .pgd import L2Ball, Momentum, eval_mode, pgd
from .precision import precision

PAPER_RADII = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)  # CIFAR-10, d = 3072, trained at L2 eps 0.5
PAPER_DIM, PAPER_TRAIN_EPS = 3072, 0.5


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


def run_radii(cfg, shape) -> list[float]:
    """`default_radii` of a run: with its L2 training radius (threat.eps) when it trained under L2."""
    a = cfg.threat
    return default_radii(shape, a.eps if a.norm.upper() == "L2" else None)


@torch.no_grad()
def probs(model, x, batch_size, device):
    """Class probabilities of x (N, ...) in batches, eval mode; CPU result."""
    with eval_mode(model):
        return torch.cat([torch.softmax(model(x[i:i + batch_size].to(device)).float(), 1).cpu()
                          for i in range(0, x.shape[0], batch_size)])


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


def explain(model, x: torch.Tensor, target, radii=None, steps: int = DEFAULT_STEPS,
            step_factor: float = STEP_FACTOR, momentum: float = DEFAULT_MOMENTUM, batch_size: int = 256,
            show_progress: bool = False, autocast=None) -> Explanation:
    """Counterfactuals of x (N, C, H, W) in [0, 1] toward `target`: a class index, (N,) indices, or
    'predicted' (the model's own prediction of each input).

    radii: L2 radii (default `default_radii(x.shape[1:])`); steps: PGD iterations per radius;
    each step moves step_factor x radius / steps along the momentum-averaged normalised gradient
    of log p(target|x) (momentum > 0 averages the normalised gradients; off by default).
    autocast: a context-manager factory (dualat.precision) for the PGD forwards; the reported
    confidences are always computed in float32. The model is used where it lives.
    """
    from tqdm.auto import tqdm
    device = next(model.parameters()).device
    x = x.detach().float().cpu()
    n = x.shape[0]
    p0 = probs(model, x, batch_size, device)
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
            threat = Momentum(L2Ball(r), momentum) if momentum > 0 else L2Ball(r)
            out[sl] = pgd(model, xb, t[idx[sl]].to(device), objective="target_confidence", threat=threat,
                          steps=steps, step_size=step_factor / steps * r, autocast=autocast,
                          callback=lambda i, _x: bar.update(1)).cpu()
    p = probs(model, out, batch_size, device)
    shape = (len(radii), n)
    return Explanation(
        radii=radii, targets=t, counterfactuals=out.view(*shape, *x.shape[1:]),
        confidences=p.gather(1, t[idx].view(-1, 1)).view(shape),
        distances=(out - x[idx]).flatten(1).norm(dim=1).view(shape),
        predictions=p.argmax(1).view(shape), original_confidence=p0.gather(1, t.view(-1, 1)).squeeze(1),
        original_prediction=p0.argmax(1), original_pred_confidence=p0.max(1).values)


def explain_to_dir(source, images: str, options: ExplainOptions | None = None, *, out=None, **settings) -> dict:
    """`dualat explain`: counterfactuals of test images / files from a run; writes one figure per
    input (explain_<name>.png), explain.json and counterfactuals.npz into `out` (default
    RUN_DIR/explain-<checkpoint>-<time>).

    The settings: an ExplainOptions (explain_options.py) or its fields as keywords. Default radii:
    `default_radii` with the run's L2 training radius (threat.eps) when it trained under L2.
    amp: None (the run's own setting), False, True or "auto": the arithmetic of the
    counterfactual PGD (explain.json's `compute_dtype`). Returns the explain.json record.
    """
    if options is not None and settings:
        raise TypeError("give ExplainOptions or keywords, not both")
    o = options if options is not None else ExplainOptions(**settings)
    c = counterfactuals(source, images, o)
    out = Path(out) if out is not None else default_output(source, "explain", o.checkpoint)
    return write_explanations(out, c, {"images": images, "target": o.target or "default", "steps": o.steps,
                                       "step": f"{o.step_factor:g} x radius / steps, L2-normalised gradient of "
                                               "log p(target|x)",
                                       "momentum": o.momentum, "command": o.command if o.command is not None
                                       else sys.argv})


def counterfactuals(source, images: str, o: ExplainOptions) -> dict:
    """What explain_to_dir shows, computed and nothing written: the inputs (x, labels, names,
    sources), their predictions p0 / pred, the (input, kind, class) target pairs, the radii, the
    Explanation `e`, the class names and the checkpoint info."""
    model, cfg, info = load_model(source, o.checkpoint, device=o.device or "cpu")
    d = cfg.data
    open_test = lru_cache(maxsize=1)(lambda: load_split(d, "test"))
    shape = data_info(d)["shape"]
    if len(shape) != 3:
        raise DualatError(f"counterfactual figures need images; {d.name} items have shape {shape}")
    dev = next(model.parameters()).device
    dtype, autocast = precision(cfg.amp if o.amp is None else o.amp, dev)
    inputs = load_inputs(images, lambda xb: probs(model, xb, o.batch_size, dev).argmax(1), open_test, tuple(shape),
                         o.n, o.batch_size)
    x, labels = inputs.x, inputs.labels
    p0 = probs(model, x, o.batch_size, dev)
    k = p0.shape[1]
    pred = p0.argmax(1)
    pairs = [(i, kind, c) for i in range(len(x))
             for kind, c in parse_targets(o.target, int(labels[i]), int(pred[i]), k)]
    radii = list(o.radii) if o.radii is not None else run_radii(cfg, shape)
    e = explain(model, x[[i for i, _, _ in pairs]], torch.tensor([c for _, _, c in pairs]), radii, o.steps,
                o.step_factor, o.momentum, o.batch_size, o.show_progress, autocast)
    names_k = getattr(open_test(), "classes", None) if any(label >= 0 for label in labels.tolist()) else None
    return {"x": x, "labels": labels, "names": inputs.names, "sources": inputs.sources, "p0": p0, "pred": pred,
            "pairs": pairs, "radii": radii, "e": e, "class_names": names_k, "info": info, "dataset": d.name,
            "dtype": dtype}


__all__ = ["explain", "Explanation", "ExplainOptions", "default_radii", "explain_to_dir"]
