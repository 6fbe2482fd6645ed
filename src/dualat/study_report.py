"""The study's HTML page: results table, sample grids per method, counterfactual panels,
training curves, the reliability diagram and the ablations (built by `study()`)."""
from __future__ import annotations

import html
import math
import re
from pathlib import Path

from .explain import explain_to_dir
from .report import Page, run_sections
from .study import COLUMNS, _cell


def study_report(out: Path, results: dict, show_progress: bool = False) -> Path:
    out = Path(out)
    n = results["seeds"]
    page = Page(out / "report.html", f"dualat study: {results['config']['name']}")
    md = (out / "results.md").read_text() if (out / "results.md").is_file() else ""
    intro = md.split("| model |")[0].split("\n", 2)[-1].strip()
    for para in intro.split("\n\n"):  # results.md's protocol paragraphs, `code` as <code>
        page.add("<p class='note'>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(para)) + "</p>")
    rows = ["<table><tr><th>model</th>" + "".join(f"<th>{html.escape(c[1])}</th>" for c in COLUMNS) + "</tr>"]
    for name, cols in results["table"].items():
        rows.append(f"<tr><td>{html.escape(name)}</td>"
                    + "".join(f"<td>{_cell(*cols[k], scale, fmt, n)}</td>" for k, _, scale, fmt in COLUMNS) + "</tr>")
    page.add("<h2>Results</h2>" + "".join(rows) + "</table>")
    # samples of every method, seed 0, the study's own evaluation
    figs = []
    for name, folder, checkpoint, sampler in _rows():
        p = out / "seed0" / folder / f"eval-study-{checkpoint}-{sampler}" / "samples.png"
        if p.is_file():
            figs.append(page.image(p, f"{name}: samples (seed 0)", f"{folder}-{checkpoint}-{sampler}", width=360))
    if figs:
        page.add("<h2>Samples (seed 0; one row per class, or per predicted class for JEM)</h2><div class='figs'>"
                 + "".join(figs) + "</div>")
    # counterfactuals: DAT and the stage-1 robust classifier, misclassified test images
    figs = []
    dat = out / "seed0" / "dat"
    for checkpoint in ("ema", "stage1"):
        target = dat / f"explain-study-{checkpoint}"
        if not target.is_dir() and ((dat / "model_ema.safetensors").is_file() or checkpoint == "stage1") \
                and (dat / "stage1.pt").is_file():
            explain_to_dir(dat, images="misclassified", n=2, checkpoint=checkpoint, out=target,
                           show_progress=show_progress, command=["dualat study"])
        for p in sorted(target.glob("explain_*.png"))[:2]:
            figs.append(page.image(p, f"{'DAT' if checkpoint == 'ema' else 'stage 1'}: counterfactuals {p.stem}",
                                   f"explain-{checkpoint}"))
    if figs:
        page.add("<h2>Counterfactual explanations (seed 0)</h2><p class='note'>Each row moves a misclassified "
                 "test image toward a class inside L2 balls of growing radius; p(target) above each image.</p>"
                 "<div class='figs'>" + "".join(figs) + "</div>")
    rel = dat / "eval-study-ema-pgd" / "reliability.png"
    if rel.is_file():
        page.add("<h2>Calibration (DAT, seed 0)</h2><div class='figs'>"
                 + page.image(rel, "reliability diagram", "dat", 320) + "</div>")
    for folder, label in (("dat", "DAT, seed 0"), ("jem", "JEM, seed 0"), ("plain", "plain classifier, seed 0")):
        if (out / "seed0" / folder / "config.yaml").is_file():
            run_sections(page, out / "seed0" / folder, label, folder, curves_only=True)
    if results.get("ablations"):
        head = ["variant", "overrides", "clean acc", "PGD-20 L2", "FD", "precision", "recall", "final T"]
        body = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(' '.join(r['overrides']))}</td>"
            + "".join(f"<td>{_f(r.get(c))}</td>" for c in ("clean_acc", "pgd_L2_acc", "fd", "precision", "recall",
                                                             "T_final")) + "</tr>"
            for k, r in results["ablations"].items())
        page.add("<h2>Ablations (DAT, seed 0)</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
                 + body + "</table>")
        figs = [page.image(p, f"{k}: samples", f"ablation-{k}", width=300) for k in results["ablations"]
                if (p := out / "ablations" / k / "eval-study-ema-pgd" / "samples.png").is_file()]
        if figs:
            page.add("<div class='figs'>" + "".join(figs) + "</div>")
    cost = out / "sampling_cost" / "sampling_cost.png"  # scripts/sampling_cost.py --out STUDY/sampling_cost
    if cost.is_file():
        table = cost.with_suffix(".md").read_text() if cost.with_suffix(".md").is_file() else ""
        page.add("<h2>Sampling cost: FD of fresh samples against passes per image</h2>"
                 + page.image(cost, "FD against sampling passes per image", "sampling-cost", width=720)
                 + (f"<pre>{html.escape(table)}</pre>" if table else ""))
    if results.get("provenance"):
        page.add("<h2>Which code trained each run</h2><ul>" + "".join(
            f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>" for k, v in results["provenance"].items())
            + "</ul>")
    return page.write()


def _f(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def _rows():
    from .study import ROWS
    return ROWS
