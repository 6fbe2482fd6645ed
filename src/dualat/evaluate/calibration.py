"""Calibration: expected calibration error of the max-softmax confidence, reliability diagram PNG."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from ..metrics import expected_calibration_error
from ..pgd import eval_mode
from ..ui import progress


@torch.no_grad()
def calibration(model, dataset, n: int | None = None, n_bins: int = 15, batch_size: int = 500,
                show_progress: bool = False) -> dict:
    """ECE (equal-width bins) of the first n test images (None = all), in eval mode.

    Returns dict(ece, accuracy, mean_confidence, nll, n, bins) with bins as in
    metrics.expected_calibration_error; nll is the mean negative log-likelihood of the label.
    """
    device = next(model.parameters()).device
    n = len(dataset) if n is None else min(n, len(dataset))
    conf, hit, nll = [], [], 0.0
    bar = progress(n, 0, "calibration", show_progress)
    with eval_mode(model):
        for start in range(0, n, batch_size):
            x, y = dataset.batch(torch.arange(start, min(start + batch_size, n)))
            logp = torch.log_softmax(model(x.to(device)).double(), 1).cpu()
            top, pred = logp.max(1)
            conf.append(top.exp())
            hit.append(pred == y)
            nll -= logp.gather(1, y.view(-1, 1)).sum().item()
            bar.update(len(y))
    bar.close()
    conf, hit = torch.cat(conf).numpy(), torch.cat(hit).numpy()
    ece, bins = expected_calibration_error(conf, hit, n_bins)
    return {"ece": ece, "accuracy": float(hit.mean()), "mean_confidence": float(conf.mean()),
            "nll": nll / max(n, 1), "n": n, "bins": bins}


def reliability_diagram(bins: list[dict], path, title: str = "", size: int = 400) -> Path:
    """Draw accuracy per confidence bin (bars) against the diagonal (perfect calibration) as PNG.

    Blue bars: each bin's accuracy; translucent red boxes: the gap between that accuracy and the
    bin's mean confidence (over the bar's top when the model is under-confident, above it when
    over-confident); grey diagonal: perfect calibration. Empty bins are left blank.
    """
    margin = 40
    img = Image.new("RGBA", (size + 2 * margin, size + 2 * margin), "white")
    gaps = Image.new("RGBA", img.size, (0, 0, 0, 0))  # drawn apart so it can be blended over the bars
    d, dg = ImageDraw.Draw(img), ImageDraw.Draw(gaps)

    def xy(cx, cy):  # confidence / accuracy in [0, 1] -> pixel
        return margin + cx * size, margin + (1 - cy) * size

    for b in bins:
        if not b["count"]:
            continue
        x0, _ = xy(b["lo"], 0)
        x1, _ = xy(b["hi"], 0)
        _, y_acc = xy(0, b["accuracy"])
        _, y_conf = xy(0, b["confidence"])
        _, y_zero = xy(0, 0)
        d.rectangle([x0, y_acc, x1, y_zero], fill=(70, 110, 200), outline=(30, 30, 30))
        dg.rectangle([x0, min(y_acc, y_conf), x1, max(y_acc, y_conf)], fill=(230, 60, 60, 110),
                     outline=(200, 30, 30, 255))
    img = Image.alpha_composite(img, gaps)
    d = ImageDraw.Draw(img)
    d.line([xy(0, 0), xy(1, 1)], fill=(120, 120, 120), width=2)
    d.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    for t in (0.0, 0.5, 1.0):
        px, py = xy(t, 0)
        d.text((px - 8, py + 6), f"{t:.1f}", fill="black")
        qx, qy = xy(0, t)
        d.text((qx - 30, qy - 6), f"{t:.1f}", fill="black")
    d.text((margin, size + margin + 22), "confidence (max softmax)   blue: accuracy, red: gap to confidence",
           fill="black")
    d.text((margin, 12), title, fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.convert("RGB").save(path)
    return path


__all__ = ["calibration", "reliability_diagram"]
