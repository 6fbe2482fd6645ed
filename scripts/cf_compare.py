"""Counterfactuals of several models compared at equal L2 radii (issue 28): a table and one figure.

    python scripts/cf_compare.py --model plain=runs/plain --model stage1=runs/dat@stage1 \
        --model dat=runs/dat --model jem=runs/jem --out runs/cf_compare

A model is LABEL=SOURCE[@CHECKPOINT]: a run directory, a checkpoint file or pretrained:NAME, and
for a run directory optionally the checkpoint name (ema, stage1, ...; default: the run's own
default). Every model runs `dualat eval --counterfactuals` with the same settings: the same N
class-balanced test images, the same targets (the judge's most likely wrong class; the judge is the
evaluation network unless --judge), the same radii (--radii, or --eps-multiples x the first
model's L2 training eps, default 1, 2, 3). Writes OUT/<label>/ (metrics.json, counterfactuals.npz),
OUT/cf_compare.md and .json (one row per model and radius) and OUT/cf_compare.png: 8 test images
(the first of classes 0..7), each model's counterfactual toward the same target side by side.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dualat.data import load_split
from dualat.errors import DualatError
from dualat.evaluate.cftable import comparison_markdown
from dualat.evaluate.run import evaluate
from dualat.images import save_png
from dualat.loading import load_model


def parse_model(text: str) -> tuple[str, str, str]:
    """'dat=runs/dat@stage1' -> ('dat', 'runs/dat', 'stage1'); no '@': checkpoint 'ema'."""
    label, sep, source = text.partition("=")
    if not sep or not label or not source:
        raise DualatError(f"--model takes LABEL=SOURCE[@CHECKPOINT], got {text!r}")
    source, _, checkpoint = source.partition("@")
    return label, source, checkpoint or "ema"


def figure(npz: dict[str, dict], radius_index: int, class_names=None) -> Image.Image:
    """Rows: the first test image of classes 0..7; columns: the input, then each model's
    counterfactual at radii[radius_index] with the model's p(target) above it."""
    first = next(iter(npz.values()))
    labels, index, targets = first["labels"], first["input_index"], first["targets"]
    pairs = [int(np.nonzero(labels[index] == c)[0][0]) for c in range(8) if (labels[index] == c).any()]
    c, h, w = first["inputs"].shape[1:]
    scale = max(1, math.ceil(72 / max(h, w)))  # cells of at least 72 px so the text fits
    cw, ch, head = w * scale, h * scale, 26
    cols = 1 + len(npz)
    canvas = Image.new("RGB", (cols * (cw + 6) + 6, 16 + len(pairs) * (ch + head + 6)), "white")
    draw = ImageDraw.Draw(canvas)
    r = float(first["radii"][radius_index])
    draw.text((6, 2), f"L2 radius {r:g}; p = each model's p(target)", fill="black")

    def tile(a):  # (C, H, W) in [0, 1]
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
        return Image.fromarray(a[..., 0] if c == 1 else a).convert("RGB").resize((cw, ch), Image.NEAREST)

    name = (lambda k: class_names[k][:9]) if class_names else str
    for row, p in enumerate(pairs):
        y0 = 16 + row * (ch + head + 6)
        t = int(targets[p])
        cells = [(first["inputs"][index[p]], f"{name(int(labels[index[p]]))}", f"-> {name(t)}")]
        cells += [(d["counterfactuals"][radius_index, p], label[:10], f"p={d['confidences'][radius_index, p]:.2f}")
                  for label, d in npz.items()]
        for col, (img, l1, l2) in enumerate(cells):
            x0 = 6 + col * (cw + 6)
            draw.text((x0, y0), l1, fill="black")
            draw.text((x0, y0 + 12), l2, fill="black")
            canvas.paste(tile(img), (x0, y0 + head))
    return canvas


def reusable(folder: Path, source: str, checkpoint: str, radii: list[float], args) -> dict | None:
    """The metrics.json an earlier run of this script wrote into `folder`, when it measured the same
    weights (sha256) with the same images, radii, steps, targets and judge; else None."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        c = metrics["counterfactuals"]
        if not (folder / "counterfactuals.npz").is_file():
            return None
        same = (c["radii"] == [float(r) for r in radii] and c["n_images"] == args.n and c["steps"] == args.steps
                and c["target"] == "wrong-judge"
                and metrics["checkpoint"]["sha256"] == load_model(source, checkpoint)[2]["sha256"])
        if args.judge is None:
            same = same and c["judge"].startswith("evaluation network")
        else:
            same = same and f"(sha256 {load_model(args.judge)[2]['sha256']})" in c["judge"]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return metrics if same else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", required=True, metavar="LABEL=SOURCE[@CHECKPOINT]")
    p.add_argument("--radii", nargs="+", type=float, default=None, help="L2 radii (default: --eps-multiples)")
    p.add_argument("--eps-multiples", default="1,2,3", help="radii = these x the first model's L2 training eps")
    p.add_argument("--n", type=int, default=500, help="class-balanced test images (default 500)")
    p.add_argument("--steps", type=int, default=50, help="PGD steps per radius (default 50, as dualat eval)")
    p.add_argument("--judge", default=None, help="judge checkpoint (default: the evaluation network)")
    p.add_argument("--figure-radius", type=int, default=1, help="index into the radii of the figure (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="cf_compare")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--reuse", action="store_true",
                   help="reuse OUT/<label>/ of an earlier run when it measured the same weights, images, radii, "
                        "steps and judge (say which in the output); otherwise measure again")
    args = p.parse_args(argv)
    try:
        models = [parse_model(m) for m in args.model]
        if len({m[0] for m in models}) != len(models):
            raise DualatError("--model labels must differ")
        _, cfg, _ = load_model(models[0][1], models[0][2])
        if args.radii is None and cfg.threat.norm.upper() != "L2":
            raise DualatError(f"{models[0][1]} trained under {cfg.threat.norm}; give --radii")
        radii = args.radii or [round(float(m) * cfg.threat.eps, 4) for m in args.eps_multiples.split(",")]
        out = Path(args.out)
        results, npz = {}, {}
        for label, source, checkpoint in models:
            r = reusable(out / label, source, checkpoint, radii, args) if args.reuse else None
            if r is None:
                r = evaluate(source, checkpoint, robust=False, generative=False, ood=False, calibrate=False,
                             counterfactuals=True, cf_n=args.n, cf_target="wrong-judge", radii=radii,
                             cf_steps=args.steps, judge=args.judge, out=out / label, device=args.device,
                             show_progress=not args.quiet)
            else:
                print(f"{label}: reused {out / label / 'metrics.json'} (same weights, judge and settings)")
            results[label] = {"source": source, "checkpoint": checkpoint, "counterfactuals": r["counterfactuals"],
                              "protocol": r["counterfactuals_protocol"]}
            with np.load(out / label / "counterfactuals.npz") as f:
                npz[label] = {k: f[k] for k in f.files}
        first = next(iter(npz.values()))
        if any(not np.array_equal(d["targets"], first["targets"]) or not np.array_equal(d["inputs"], first["inputs"])
               for d in npz.values()):
            raise DualatError("the models explained different images or targets (another dataset or judge?)")
        command = "python scripts/cf_compare.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        table = comparison_markdown({label: [r["counterfactuals"]] for label, r in results.items()})
        (out / "cf_compare.md").write_text(
            f"# Counterfactuals compared\n\nCommand: `{command}`\n\nL2 radii {radii}; {args.n} class-balanced test "
            f"images, targets = the judge's most likely wrong class (the same for every model). Models: "
            + ", ".join(f"{label} = {r['source']} ({r['checkpoint']} weights)" for label, r in results.items())
            + f". Protocol (the first model's text; each model's own, with its weights' sha256, is in "
            f"OUT/<model>/metrics.json): {next(iter(results.values()))['protocol']}\n\n{table}")
        (out / "cf_compare.json").write_text(json.dumps({"command": command, "radii": radii, "models": results},
                                                        indent=1))
        ri = min(max(args.figure_radius, 0), len(radii) - 1)
        save_png(figure(npz, ri, getattr(load_split(cfg.data, "test"), "classes", None)), out / "cf_compare.png")
    except DualatError as exc:
        print(f"cf_compare: error: {exc}", file=sys.stderr)
        return 2
    print(table)
    print(f"written: {out / 'cf_compare.md'}, {out / 'cf_compare.json'}, {out / 'cf_compare.png'} and one folder "
          f"per model in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
