"""The readable table `dualat eval` prints: one block per family, its numbers, then its protocol."""
from __future__ import annotations

import textwrap

from .counterfactuals import format_counterfactuals

BLOCKS = [
    ("robustness", ["clean_acc", "pgd_L2_acc", "pgd_Linf_acc", "robust_acc", "autoattack_clean_acc",
                    "autoattack_L2_acc", "autoattack_Linf_acc"],
     ["clean_protocol", "robust_protocol", "autoattack_protocol"]),
    ("generative quality", ["fd", "inception_score", "precision", "recall", "density", "coverage",
                            "class_agreement", "fd_floor_train_vs_test", "fd_seeds"], ["generative_protocol"]),
    ("OOD detection (AUROC)", [], ["ood_protocol"]),
    ("calibration", ["ece", "calibration_accuracy", "mean_confidence", "nll"], ["calibration_protocol"]),
    ("counterfactuals", [], ["counterfactuals_protocol"]),
]


def _value(result: dict, key: str) -> str:
    v = result[key]
    if key == "inception_score" and "inception_score_std" in result:
        return f"{v:.4f} ± {result['inception_score_std']:.4f}"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _ood_rows(result: dict) -> list[str]:
    table = result.get("ood_auroc") or {}
    if not table:
        return []
    cols = list(next(iter(table.values())))
    width = max(len(name) for name in table) + 2
    lines = [" " * width + "  ".join(f"{c:>15}" for c in cols)]
    for name, row in table.items():
        lines.append(f"{name:<{width}}" + "  ".join(f"{row[c]:>15.4f}" for c in cols))
    for name, why in (result.get("ood_skipped") or {}).items():
        lines.append(f"{name:<{width}}skipped: {why}")
    return lines


def format_table(result: dict, width: int = 110) -> str:
    """Every number of `result` (evaluate()'s dict), grouped by family, each with its protocol."""
    lines = [f"checkpoint  {result['checkpoint']['path']} ({result['checkpoint']['sha256']})"]
    dtypes = result.get("compute_dtype") or {}
    if dtypes:  # which arithmetic produced which numbers (amp, dualat.precision)
        by = {}
        for key, dt in dtypes.items():
            by.setdefault(dt, []).append(key)
        lines.append("computed in " + "; ".join(f"{dt}: {', '.join(keys)}" for dt, keys in by.items()))
    for title, keys, protocols in BLOCKS:
        present = [k for k in keys if k in result]
        extra = _ood_rows(result) if title.startswith("OOD") else []
        extra += format_counterfactuals(result) if title == "counterfactuals" else []
        if not present and not extra and not any(p in result for p in protocols):
            continue
        lines += ["", f"== {title}"]
        if present:
            w = max(len(k) for k in present)
            lines += [f"{k:<{w}}  {_value(result, k)}" for k in present]
        lines += extra
        for p in protocols:
            if p in result:
                lines += textwrap.wrap(f"{p}: {result[p]}", width, subsequent_indent="    ")
    if "counterfactuals_skipped" in result:
        lines += ["", f"counterfactuals: skipped ({result['counterfactuals_skipped']})"]
    if "generative_skipped" in result:
        lines += ["", f"generative: skipped ({result['generative_skipped']})"]
    return "\n".join(lines)


__all__ = ["format_table"]
