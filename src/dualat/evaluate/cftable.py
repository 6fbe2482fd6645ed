"""The markdown table that compares the counterfactual family of several models (`dualat study
--counterfactuals`, scripts/cf_compare.py): one row per model and radius, mean ± std over the
results given for each model (seeds)."""
from __future__ import annotations

import math

import numpy as np

COLUMNS = [("flip_rate", "model flip %", 100), ("judge_flip_rate", "judged flip %", 100),
           ("judge_target_prob", "judged p(target)", 1), ("l2", "L2", 1), ("changed_frac", "pixels changed %", 100),
           ("fd", "FD per class (evalnet)", 1), ("knn_ratio", "k-NN ratio", 1), ("im1", "IM1", 1), ("im2", "IM2", 1)]


def _cell(values: list[float], scale: float) -> str:
    v = [x * scale for x in values if x is not None and not math.isnan(x)]
    if not v:
        return "-"
    fmt = "{:.1f}" if scale == 100 else "{:.3f}"
    return fmt.format(np.mean(v)) + (" ± " + fmt.format(np.std(v, ddof=1)) if len(v) > 1 else "")


def comparison_markdown(results: dict[str, list[dict]]) -> str:
    """results: {model label: [the 'counterfactuals' dict of evaluate(), one per seed]} -> a
    markdown table; the radius-0 row (the inputs themselves) is shown once per model as 'inputs'."""
    head = "| model | radius | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [head, "|---|---|" + "---|" * len(COLUMNS)]
    for model, runs in results.items():
        runs = [r for r in runs if r]
        if not runs:
            continue
        for i, row in enumerate(runs[0]["rows"]):
            radius = "inputs" if row["radius"] == 0 else f"{row['radius']:g}"
            cells = [_cell([r["rows"][i].get(key) for r in runs if i < len(r["rows"])], scale) for key, _, scale in COLUMNS]
            lines.append(f"| {model} | {radius} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["comparison_markdown", "COLUMNS"]
