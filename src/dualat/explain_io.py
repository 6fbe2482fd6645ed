"""`dualat explain`'s inputs and outputs: reading what --images / --target name (test indices,
misclassified test images, image files; classes), and writing the figures and explain.json of
computed counterfactuals (explain.counterfactuals). No model runs here: what needs the model's
predictions (the misclassified images) is handed a `predict` function by explain.py."""
from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from .data.folder import load_image, resize_center_crop
from .errors import DualatError
from .images import save_png


@dataclass
class Inputs:
    """What --images named: x (M, *shape) in [0, 1], labels (M,) int64 (-1 = unknown: a file),
    names (for the figures' file names) and sources ('test:5' or the file's path)."""
    x: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    sources: list[str]


def load_inputs(spec: str, predict, open_test, shape, n: int, batch_size: int) -> Inputs:
    """--images SPEC -> Inputs.

    SPEC: 'misclassified' (the first n test images the model gets wrong), or comma-separated
    test-set indices and/or image file paths (any size or colour mode: converted to the model's
    channels, shorter side resized to its input size, centre-cropped). open_test() -> the test set,
    read only when test images are asked for; predict(x) -> (N,) the model's classes.
    """
    from pathlib import Path

    if spec.strip() == "misclassified":
        if not (isinstance(n, int) and n >= 1):
            raise DualatError(f"--n must be a whole number >= 1, got {n!r}")
        found, test_set = [], open_test()
        for s in range(0, len(test_set), batch_size):
            xb, yb = test_set.batch(torch.arange(s, min(s + batch_size, len(test_set))))
            wrong = (predict(xb) != yb).nonzero().view(-1) + s
            found += wrong.tolist()
            if len(found) >= n:
                break
        if not found:
            raise DualatError("the model classifies every test image correctly; give --images indices or files")
        found = found[:n]
        x, y = test_set.batch(torch.tensor(found))
        return Inputs(x.float(), y.long(), [f"test{i}" for i in found], [f"test:{i}" for i in found])
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
    return Inputs(torch.stack(xs), torch.tensor(ys, dtype=torch.long), names, sources)


def parse_targets(spec: str | None, label: int, pred: int, k: int) -> list[tuple[str, int]]:
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


def figure(x, cfs, confs, radii, targets, title, class_names):
    """One row per target: original | counterfactual per radius (p(target) above) | signed
    difference of the largest radius (red = brighter, blue = darker, white = unchanged)."""
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


def write_explanations(out, c: dict, settings: dict) -> dict:
    """One figure per input (explain_<name>.png), explain.json and counterfactuals.npz (the
    counterfactuals as data) in `out`, from the result of explain.counterfactuals; `settings`
    (images, target, steps, step, momentum, command) go into the record. Returns the record."""
    x, labels, names, sources, p0, pred = c["x"], c["labels"], c["names"], c["sources"], c["p0"], c["pred"]
    pairs, radii, e, names_k = c["pairs"], c["radii"], c["e"], c["class_names"]
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(len(x)):
        rows = [j for j, (ii, _, _) in enumerate(pairs) if ii == i]
        label = int(labels[i])
        title = (f"{sources[i]}: " + (f"label {label}, " if label >= 0 else "")
                 + f"predicted {int(pred[i])} (p={float(p0[i, pred[i]]):.3f})")
        confs = [e.original_confidence[rows].tolist()] + [e.confidences[r][rows].tolist() for r in range(len(radii))]
        fig = figure(x[i], [e.counterfactuals[r][rows] for r in range(len(radii))], confs, radii,
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
    record = {"checkpoint": c["info"], "dataset": c["dataset"], "images": settings["images"],
              "target": settings["target"], "radii": [float(r) for r in radii], "steps": settings["steps"],
              "step": settings["step"], "momentum": settings["momentum"], "torch": torch.__version__,
              "compute_dtype": {"counterfactuals": c["dtype"], "confidences": "float32"}, "command": settings["command"], "time": datetime.datetime.now().isoformat(timespec="seconds"),
              "out": str(out), "data": "counterfactuals.npz", "inputs": entries}
    (out / "explain.json").write_text(json.dumps(record, indent=1))
    save_counterfactuals(out / "counterfactuals.npz", x, labels, [i for i, _, _ in pairs], e, p0,
                         kinds=[k for _, k, _ in pairs], sources=sources)
    return record


def save_counterfactuals(path, x, labels, input_index, e, p0, kinds=None, sources=None) -> None:
    """counterfactuals.npz (docs/guide.md lists its keys): M inputs, P (input, target) pairs, R
    radii. x (M, C, H, W) in [0, 1]; labels (M,) (-1 = unknown); input_index (P,) which input each
    pair explains; e: the explain.Explanation of the P pairs; p0 (M, K) the model's probabilities
    of the inputs; kinds (P,) how each target was named; sources (M,) where each input came from."""
    p0 = torch.as_tensor(p0).float()
    arrays = {
        "inputs": x.float().numpy(), "labels": torch.as_tensor(labels).long().numpy(),
        "input_probs": p0.numpy(), "input_predictions": p0.argmax(1).numpy(),
        "input_index": torch.as_tensor(input_index).long().numpy(), "targets": e.targets.long().numpy(),
        "radii": e.radii.float().numpy(), "counterfactuals": e.counterfactuals.float().numpy(),
        "confidences": e.confidences.float().numpy(), "predictions": e.predictions.long().numpy(),
        "distances": e.distances.float().numpy(), "original_confidence": e.original_confidence.float().numpy()}
    if kinds is not None:
        arrays["target_kinds"] = np.array(kinds, dtype=str)
    if sources is not None:
        arrays["sources"] = np.array(sources, dtype=str)
    np.savez_compressed(path, **arrays)
