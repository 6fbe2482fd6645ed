"""`dualat sample`'s files: per-sample PNGs as the batches come, then samples.npz, grid.png,
trajectory.png and sample.json of what sample.collect generated."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .images import class_grid, grid, save_png


def png_writer(out: Path):
    """A callback(start, x, y) that writes png/<index>_y<class>.png for every sample of a batch."""
    def write(start, x, y):
        for i in range(x.shape[0]):
            save_png(grid(x[i:i + 1], nrow=1, pad=0), out / "png" / f"{start + i:06d}_y{int(y[i])}.png")
    return write


def write_sample_dir(out: Path, c: dict, k: int, shape, png: bool, record: dict) -> dict:
    """samples.npz, grid.png (images), trajectory.png (with a strip) and sample.json = `record`
    with its list of files; returns the record."""
    image = len(shape) == 3
    np.savez_compressed(out / "samples.npz", x=c["x"], y=c["y"])
    files = ["samples.npz", "sample.json"] + (["grid.png"] if image else []) + (["png/"] if png else [])
    scale = max(1, round(64 / shape[-1]))  # about 64 pixels per image, so 8x8 digits stay visible
    if image:
        x_all = torch.from_numpy(c["x"]).float() / 255
        save_png(class_grid(x_all, torch.from_numpy(c["y"]), k, per_class=10, scale=scale), out / "grid.png")
    if c["strip"] is not None:
        strip = c["strip"]
        save_png(grid(strip.flatten(0, 1), nrow=strip.shape[1], scale=scale), out / "trajectory.png")
        files.append("trajectory.png")
    record = {**record, "files": files}
    (out / "sample.json").write_text(json.dumps(record, indent=1))
    return record
