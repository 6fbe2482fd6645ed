"""Sample quality against sampling cost (issue 15): the measured curve of one sampler.

    PassCounter(model)                      counts the images that go through model.forward
    pgd_draw(...), sgld_draw(...), buffer_draw(...)
                                            draw(steps) -> (sample_features dict, labels | None)
    measure_curve(model, draw, steps, ext, real, ref)
                                            one point per step count: FD, precision, recall, density,
                                            coverage, class agreement, passes per image (counted)

Every point is FRESH samples (PGD from held-out seeds, SGLD from its initial distribution) except
buffer_draw, JEM's replay buffer, which is a reference point and not a sampler.
"""
from __future__ import annotations

import time

import torch

from ..errors import DualatError
from ..samplers import SAMPLERS, Chunk, Draw
from ..sgld import predictions
from .generative import generative_metrics, sample_features

POINT_KEYS = ("fd", "precision", "recall", "density", "coverage", "inception_score")


class PassCounter:
    """Counts images through `model`'s forward while entered: `grad` with autograd on (a sampler
    step: one forward and one backward pass per image), `nograd` forward-only (labels)."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.grad, self.nograd, self._handle = model, 0, 0, None

    def _hook(self, module, inputs, output):
        n = int(inputs[0].shape[0]) if inputs and torch.is_tensor(inputs[0]) else 0
        if torch.is_grad_enabled():
            self.grad += n
        else:
            self.nograd += n

    def __enter__(self):
        self._handle = self.model.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()
        return False


def parse_steps(text, what: str = "--sweep-steps") -> list[int]:
    """'10,20,40' (or a list) -> [10, 20, 40]: distinct whole numbers >= 1; else one error line."""
    items = [str(s).strip() for s in (text.split(",") if isinstance(text, str) else text)]
    if not items or not all(s.isdigit() for s in items) or min(int(s) for s in items) < 1 \
            or len(set(int(s) for s in items)) != len(items):
        raise DualatError(f"{what} takes distinct whole step counts >= 1 separated by commas, e.g. 10,20,40,80; "
                          f"got {text!r}")
    return [int(s) for s in items]


def pgd_draw(model, ext, seed_source, labels: torch.Tensor, step_size: float, seed: int, dist=None):
    """DAT's sampler: class-conditional ascent on f_y from `seed_source` (held-out seeds)."""
    share = (dist.rank, dist.world_size) if dist is not None else (0, 1)

    def draw(steps):
        d = Draw(model, len(labels), steps, step_size, seed, labels=labels, seeds=seed_source, share=share)
        return sample_features(ext, SAMPLERS["pgd"].chunks(d), keep=1, dist=dist), labels
    return draw


def sgld_draw(model, ext, init, n: int, step_size: float, noise: float, clamp: bool, seed: int):
    """Fresh SGLD chains from `init` (sgld.InitialDistribution); labels = the model's predictions
    (one forward-only pass per image, counted apart from the chains' passes)."""
    def draw(steps):
        d = Draw(model, n, steps, step_size, seed, init=init, noise=noise, clamp=clamp)
        s = sample_features(ext, list(SAMPLERS["sgld"].chunks(d)), keep=1)
        return s, s["labels"]
    return draw


def buffer_draw(model, ext, images: torch.Tensor, n: int, seed: int):
    """n random images of a JEM replay buffer (a reference point: no step count, no chains run)."""
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:min(n, len(images))]
    x = images[idx].float()

    def draw(steps):
        y = predictions(model, x, next(model.parameters()).device)
        return sample_features(ext, [Chunk(0, y, x, x)], keep=1), y
    return draw


def measure_curve(model, draw, steps_list, ext, real, ref, k: int = 5, is_splits: int = 10, dist=None,
                  class_labels: bool = True) -> list[dict]:
    """One dict per step count: the generative metrics of draw(steps)'s samples against `real`
    features / `ref` = (mu, sigma), the counted passes per image, and the seconds it took.
    passes_per_image = images through the model with autograd on / samples (one forward and one
    backward each); forward_only_per_image = passes without autograd (labels of JEM samples)."""
    points = []
    for steps in steps_list:
        t0 = time.perf_counter()
        with PassCounter(model) as c:
            s, labels = draw(steps)
        grad, nograd = c.grad, c.nograd
        if dist is not None:
            grad, nograd = dist.sum(grad), dist.sum(nograd)
        n = len(s["feats"])
        m = generative_metrics(s["feats"], s["probs"], real, ref, k=k, splits=is_splits)
        point = {"steps": steps, "n": n, **{key: float(m[key]) for key in POINT_KEYS if key in m}}
        if class_labels and labels is not None and ext.name == "evalnet":
            point["class_agreement"] = float((s["probs"].argmax(1) == labels.numpy()).mean())
        point.update({"passes_per_image": grad / n, "forward_only_per_image": nograd / n,
                      "seconds": round(time.perf_counter() - t0, 3)})
        points.append(point)
    return points


def format_points(points: list[dict], title: str = "") -> str:
    """A plain-text table of measure_curve's points (the one `dualat eval --sweep-steps` prints)."""
    cols = ["steps", "passes_per_image", "fd", "precision", "recall", "density", "coverage", "class_agreement"]
    cols = [c for c in cols if any(c in p for p in points)]
    head = [c.replace("_per_image", "/img") for c in cols]
    w = [max(len(h), 9) for h in head]
    lines = [title] if title else []
    lines.append("  ".join(f"{h:>{wi}}" for h, wi in zip(head, w)))
    for p in points:
        cells = []
        for c, wi in zip(cols, w):
            v = p.get(c)
            cells.append(f"{'-':>{wi}}" if v is None else f"{v:>{wi}}" if isinstance(v, int) else f"{v:>{wi}.4g}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


__all__ = ["PassCounter", "parse_steps", "pgd_draw", "sgld_draw", "buffer_draw", "measure_curve", "format_points"]
