"""The study's HTML page and results.md: results table, sample grids per method, counterfactual
panels, training curves, the reliability diagram and the ablations. Renders only what `study()`
computed and wrote (it computes nothing)."""
from __future__ import annotations

import html
import math
import re
from pathlib import Path

from .evaluate.cftable import comparison_markdown
from .report import Page, run_sections
from .rundir import RunDir


def study_report(out: Path, results: dict, view: dict | None = None) -> Path:
    """report.html from the study's results and table view (study.table_view; None: no table)."""
    out = Path(out)
    view = view or {"columns": [], "cells": {}, "rows": []}
    page = Page(out / "report.html", f"dualat study: {results['config']['name']}")
    md = (out / "results.md").read_text() if (out / "results.md").is_file() else ""
    intro = md.split("| model |")[0].split("\n", 2)[-1].strip()
    for para in intro.split("\n\n"):  # results.md's protocol paragraphs, `code` as <code>
        page.add("<p class='note'>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(para)) + "</p>")
    rows = ["<table><tr><th>model</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in view["columns"]) + "</tr>"]
    for name, cells in view["cells"].items():
        rows.append(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    page.add("<h2>Results</h2>" + "".join(rows) + "</table>")
    # samples of every method, seed 0, the study's own evaluation
    figs = []
    for name, folder, checkpoint, sampler in view["rows"]:
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
        for p in sorted(target.glob("explain_*.png"))[:2]:
            figs.append(page.image(p, f"{'DAT' if checkpoint == 'ema' else 'stage 1'}: counterfactuals {p.stem}",
                                   f"explain-{checkpoint}"))
    if figs:
        page.add("<h2>Counterfactual explanations (seed 0)</h2><p class='note'>Each row moves a misclassified "
                 "test image toward a class inside L2 balls of growing radius; p(target) above each image.</p>"
                 "<div class='figs'>" + "".join(figs) + "</div>")
    if results.get("counterfactuals"):
        page.add("<h2>Counterfactuals measured</h2><p class='note'>L2 radii "
                 f"{html.escape(str(results['settings'].get('cf_radii')))}; the same images and targets for every "
                 "model; protocol in each RUN/eval-study-&lt;checkpoint&gt;-counterfactuals/metrics.json</p><pre>"
                 + html.escape(comparison_markdown(results["counterfactuals"])) + "</pre>")
    rel = dat / "eval-study-ema-pgd" / "reliability.png"
    if rel.is_file():
        page.add("<h2>Calibration (DAT, seed 0)</h2><div class='figs'>"
                 + page.image(rel, "reliability diagram", "dat", 320) + "</div>")
    for folder, label in (("dat", "DAT, seed 0"), ("jem", "JEM, seed 0"), ("plain", "plain classifier, seed 0")):
        if (out / "seed0" / folder / RunDir.CONFIG).is_file():
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
    # scripts/sampling_cost.py --out STUDY/sampling_cost; scripts/fair_comparison.py --out STUDY/fair_comparison
    for folder, title, caption in (
            ("sampling_cost", "Sampling cost: FD of fresh samples against passes per image",
             "FD against sampling passes per image"),
            ("fair_comparison", "The fair comparison over training seeds: mean FD of fresh samples against passes "
             "per image", "mean FD over training seeds against sampling passes per image")):
        fig = out / folder / f"{folder}.png"
        if fig.is_file():
            table = fig.with_suffix(".md").read_text() if fig.with_suffix(".md").is_file() else ""
            page.add(f"<h2>{html.escape(title)}</h2>" + page.image(fig, caption, folder.replace("_", "-"), width=720)
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


def cell(mean: float, std: float, scale: float, fmt: str, n: int) -> str:
    if math.isnan(mean):
        return "-"
    text = fmt.format(mean * scale)
    return text + (" ± " + fmt.format(std * scale) if n > 1 else "")


def results_markdown(results: dict, view: dict, config, overrides, out: Path) -> str:
    """results.md: the protocol, the table (cells formatted by the study), divergences, provenance, ablations."""
    s = results["settings"]
    n = results["seeds"]
    lines = [f"# Study: {results['config']['name']}", "",
             f"Command: `dualat study {config} --seeds {n} --out {out}"
             + "".join(" " + o for o in s.get("options", [])) + (" " + " ".join(overrides) if overrides else "") + "`",
             "", f"Machine: {results['machine']}, PyTorch {results['torch']}, {results['threads']} torch thread(s) "
             "in the process that wrote this table (each run's own threads are listed below). "
             f"Mean ± standard deviation over {n} seed(s). Clean and PGD-20 accuracy on "
             f"{'all' if s['n_test'] is None else s['n_test']} test images, AutoAttack (standard, L2, "
             f"eps = the run's) on the first {s['n_autoattack']}; generative metrics of {s['n_samples']} samples "
             f"against {s['n_ref']} test images in the evaluation network's features (FD is NOT an FID); "
             f"PGD sampler: {_steps_text(s['sample_steps'])} of {s['sample_step_size']:g} from held-out seeds; JEM: "
             f"samples of the replay buffer, or fresh SGLD chains of {s['sgld_steps']} steps (the same weights: "
             "the fresh-chain row repeats the buffer row's accuracies; the buffer row's sampling steps are the "
             "SGLD steps of each training iteration, on chains that persist across iterations). Passes = forward/"
             "backward image passes of training; wall time as measured (includes periodic evaluation; "
             "on a shared machine it overstates the cost).", "",
             "| model | " + " | ".join(view["columns"]) + " |", "|---|" + "---|" * len(view["columns"])]
    for name, cells in view["cells"].items():
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    div = [(name, r["seed"], r["diverged_at"]) for name, rows in results["rows"].items() for r in rows if r["diverged"]]
    lines += ["", "Divergences: " + ("; ".join(f"{a} seed {b} at iteration {c}" for a, b, c in div) if div else "none")]
    if results.get("provenance"):
        lines += ["", "Which code trained each run (from its log; a study adopts finished runs it finds in OUT):", ""]
        lines += [f"- `{name}`: {text}" for name, text in results["provenance"].items()]
    if results["ablations"]:
        lines += ["", "## Ablations (DAT, seed 0, from the seed-0 stage-1 weights; PGD-20 L2, same sampler)", "",
                  "| variant | overrides | clean acc | PGD-20 L2 | FD (evalnet) | precision | recall | final T | diverged |",
                  "|---|---|---|---|---|---|---|---|---|"]
        base = results["rows"]["DAT"][0]
        lines.append(f"| DAT (reference) | preset | {_pct(base.get('clean_acc'))} | {_pct(base.get('pgd_L2_acc'))} | "
                     f"{_num(base.get('fd'))} | {_num(base.get('precision'), 3)} | {_num(base.get('recall'), 3)} | - | - |")
        for name, r in results["ablations"].items():
            lines.append(f"| {name} | `{' '.join(r['overrides'])}` | {_pct(r['clean_acc'])} | {_pct(r['pgd_L2_acc'])} | "
                         f"{_num(r['fd'])} | {_num(r['precision'], 3)} | {_num(r['recall'], 3)} | "
                         f"{r['T_final'] if r['T_final'] is not None else '-'} | "
                         f"{'at ' + str(r['diverged']['iteration']) if r['diverged'] else 'no'} |")
    if results.get("ablations_skipped"):
        lines += ["", "Ablations skipped because the config already has their settings: "
                  + "; ".join(f"{k} (`{' '.join(v)}`)" for k, v in results["ablations_skipped"].items()) + "."]
    return "\n".join(lines) + "\n"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _num(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _steps_text(steps) -> str:
    return (f"{steps} steps" if steps else
            "each run's own steps (chosen at the end of its stage 2: sample_steps.json; else its final T)")
