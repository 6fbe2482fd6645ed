"""A small line plot drawn with PIL (matplotlib is not a dependency): log or linear x axis,
linear y axis, one coloured line with markers per series, labelled horizontal reference lines,
ticks, axis labels and a legend."""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from ..images import label_font

COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (23, 190, 207)]
REF_COLOR = (110, 110, 110)


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About n round tick values covering [lo, hi] (steps of 1, 2 or 5 x 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 x 10^k values spanning [lo, hi] (lo > 0)."""
    out = []
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        out += [m * 10 ** k for m in (1, 2, 5)]
    inside = [t for t in out if lo <= t <= hi]
    below = [t for t in out if t < lo]
    above = [t for t in out if t > hi]
    return (below[-1:] if below else []) + inside + (above[:1] if above else [])


def _label(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e5 else f"{v:.0e}"


def line_plot(series: list[dict], path, title: str = "", xlabel: str = "", ylabel: str = "", logx: bool = True,
              hlines: list[tuple[float, str]] = (), size: tuple[int, int] = (960, 600), logy: bool = False) -> Path:
    """series: [{"label": str, "x": [...], "y": [...], "dashed": bool}] (points with x <= 0 on a log
    axis, y <= 0 on a log y axis, or a non-finite y are left out); hlines: [(y, label)] drawn as grey dashed lines.
    Writes a PNG and returns its path."""
    w, h = size
    left, right, top, bottom = 80, 30, 50, 70
    legend_h = 22 * (len(series) + len(hlines)) + 12
    img = Image.new("RGB", (w, h + legend_h), "white")
    d = ImageDraw.Draw(img)
    font, small = label_font(15), label_font(12)
    pts = [[(float(x), float(y)) for x, y in zip(s["x"], s["y"])
            if math.isfinite(float(y)) and (float(x) > 0 or not logx) and (float(y) > 0 or not logy)]
           for s in series]
    hlines = [(float(y), label) for y, label in hlines if math.isfinite(float(y)) and (float(y) > 0 or not logy)]
    xs = [x for p in pts for x, _ in p] or [1.0, 10.0]
    ys = [y for p in pts for _, y in p] + [y for y, _ in hlines] or [1.0, 10.0]
    if logy:
        yt = log_ticks(min(ys), max(ys))
        fy = math.log10
    else:
        yt = nice_ticks(min(0.0, min(ys)), max(ys) * 1.05 if max(ys) > 0 else 1.0)
        fy = float
    y0, y1 = fy(yt[0]), fy(yt[-1])
    if y1 == y0:
        y1 = y0 + 1
    if logx:
        xt = log_ticks(min(xs), max(xs))
        fx = math.log10
    else:
        xt = nice_ticks(min(xs), max(xs))
        fx = float
    x0, x1 = fx(xt[0]), fx(xt[-1])
    if x1 == x0:
        x1 = x0 + 1

    def px(x, y):
        return (left + (fx(x) - x0) / (x1 - x0) * (w - left - right),
                top + (1 - (fy(y) - y0) / (y1 - y0)) * (h - top - bottom))

    for t in yt:  # grid and ticks
        _, py = px(xt[0], t)
        d.line([(left, py), (w - right, py)], fill=(232, 232, 232))
        d.text((left - 8, py), _label(t), fill="black", font=small, anchor="rm")
    for t in xt:
        qx, _ = px(t, yt[0])
        d.line([(qx, top), (qx, h - bottom)], fill=(232, 232, 232))
        d.text((qx, h - bottom + 8), _label(t), fill="black", font=small, anchor="mt")
    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for (y, label) in hlines:
        _, py = px(xt[0], y)
        for sx in range(left, w - right, 14):
            d.line([(sx, py), (min(sx + 7, w - right), py)], fill=REF_COLOR, width=2)
    for i, (s, p) in enumerate(zip(series, pts)):
        c = COLORS[i % len(COLORS)]
        xy = [px(x, y) for x, y in p]
        if len(xy) > 1:
            d.line(xy, fill=c, width=3 if not s.get("dashed") else 2)
        for qx, qy in xy:
            d.ellipse([qx - 4, qy - 4, qx + 4, qy + 4], fill=c, outline="black")
    d.text((w / 2, 18), title, fill="black", font=font, anchor="mm")
    d.text(((left + w - right) / 2, h - bottom + 32), xlabel + (" (log scale)" if logx else ""), fill="black",
           font=font, anchor="mt")
    ylab = Image.new("RGB", (h - top - bottom, 24), "white")
    ImageDraw.Draw(ylab).text(((h - top - bottom) / 2, 12), ylabel, fill="black", font=font, anchor="mm")
    img.paste(ylab.rotate(90, expand=True), (8, top))
    if logy:
        d.text((left + 4, top - 14), "(log scale)", fill="black", font=small, anchor="lm")
    ly = h + 4  # legend under the plot
    for i, s in enumerate(series):
        c = COLORS[i % len(COLORS)]
        d.line([(left, ly + 9), (left + 30, ly + 9)], fill=c, width=3)
        d.ellipse([left + 11, ly + 5, left + 19, ly + 13], fill=c, outline="black")
        d.text((left + 40, ly + 9), s["label"], fill="black", font=small, anchor="lm")
        ly += 22
    for y, label in hlines:
        for sx in range(left, left + 30, 14):
            d.line([(sx, ly + 9), (sx + 7, ly + 9)], fill=REF_COLOR, width=2)
        d.text((left + 40, ly + 9), f"{label}: {y:.4g}", fill="black", font=small, anchor="lm")
        ly += 22
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


__all__ = ["line_plot", "nice_ticks", "log_ticks"]
