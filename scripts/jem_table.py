"""The JEM-versus-DAT tables of docs/results.md section 6, from the evaluation folders of the runs.

    python scripts/jem_table.py --dat RUN_DAT --jem RUN_JEM_S0 RUN_JEM_S1 RUN_JEM_S2

Reads, in every JEM run: summary.json, eval-full/ (all test images, PGD-20, OOD, calibration),
eval-aa/ (AutoAttack, first 200), eval-gen-buffer/ and eval-gen-sgld40/ (2,000 samples vs the
10,000 test images in the evaluation network's features); in the DAT run the same folders with the
-ema suffix (eval-full-ema, eval-aa-ema, eval-core-gen-ema). Prints mean ± std over the JEM seeds.
A missing folder prints '-'.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _load(path: Path) -> dict:
    p = path / "metrics.json" if path.is_dir() else path
    return json.loads(p.read_text()) if p.is_file() else {}


def _get(d: dict, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _cell(values: list, scale: float = 1.0, digits: int = 2) -> str:
    v = [x * scale for x in values if x is not None]
    if not v:
        return "-"
    text = f"{statistics.mean(v):.{digits}f}"
    if len(v) > 1:
        text += f" ± {statistics.stdev(v):.{digits}f}"
    return text + ("" if len(v) == len(values) else f" (n={len(v)})")


def jem_rows(runs: list[Path]) -> dict[str, list]:
    cols: dict[str, list] = {}

    def add(name, value):
        cols.setdefault(name, []).append(value)

    for run in runs:
        s = _load(run / "summary.json")
        j = s.get("jem") or {}
        full, aa = _load(run / "eval-full"), _load(run / "eval-aa")
        buf, fresh = _load(run / "eval-gen-buffer"), _load(run / "eval-gen-sgld40")
        add("diverged", j.get("diverged"))
        add("iterations", j.get("iterations_done"))
        add("passes", j.get("passes"))
        add("wall_min", j["wall_s"] / 60 if "wall_s" in j else None)
        add("cpu_min", j["cpu_s"] / 60 if "cpu_s" in j else None)
        add("restart", j.get("buffer_restart_rate"))
        for k in ("clean_acc", "pgd_L2_acc", "pgd_Linf_acc", "ece"):
            add(k, full.get(k))
        for k in ("autoattack_L2_acc", "autoattack_Linf_acc", "autoattack_clean_acc"):
            add(k, aa.get(k))
        for ood in ("uniform_noise", "patches"):
            for score in ("logsumexp", "adv_logsumexp"):
                add(f"{ood}_{score}", _get(full, "ood_auroc", ood, score))
        for tag, g in (("buffer", buf), ("fresh", fresh)):
            for k in ("fd", "inception_score", "precision", "recall", "class_agreement"):
                add(f"{tag}_{k}", g.get(k))
    return cols


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dat", type=Path, required=True)
    ap.add_argument("--jem", type=Path, nargs="+", required=True)
    args = ap.parse_args()
    c = jem_rows(args.jem)
    n = len(args.jem)
    dat_full, dat_aa = _load(args.dat / "eval-full-ema"), _load(args.dat / "eval-aa-ema")
    dat_gen = _load(args.dat / "eval-core-gen-ema")
    d = {k: [dat_full.get(k)] for k in ("clean_acc", "pgd_L2_acc", "pgd_Linf_acc", "ece")}
    d.update({k: [dat_aa.get(k)] for k in ("autoattack_L2_acc", "autoattack_Linf_acc", "autoattack_clean_acc")})
    for ood in ("uniform_noise", "patches"):
        for score in ("logsumexp", "adv_logsumexp"):
            d[f"{ood}_{score}"] = [_get(dat_full, "ood_auroc", ood, score)]

    print(f"Training ({n} JEM seeds; divergences: "
          + (", ".join(f"seed {i} at iteration {v['iteration']}" for i, v in enumerate(c['diverged']) if v)
             or "none") + ")\n")
    print("| model | iterations | fwd/bwd passes (M images) | wall (min) | CPU (min) | buffer restart rate |")
    print("|---|---|---|---|---|---|")
    print(f"| JEM | {_cell(c['iterations'], digits=0)} | {_cell(c['passes'], 1e-6)} | {_cell(c['wall_min'], digits=1)} | "
          f"{_cell(c['cpu_min'], digits=1)} | {_cell(c['restart'], digits=4)} |")

    print("\nClassification, robustness, calibration (all 10,000 test images; AutoAttack: first 200)\n")
    print("| model | clean | PGD-20 L2 ε=1 | PGD-20 Linf ε=0.1 | clean (first 200) | AutoAttack L2 ε=1 (200) | "
          "AutoAttack Linf ε=0.1 (200) | ECE |")
    print("|---|---|---|---|---|---|---|---|")
    for name, v in (("DAT (EMA, seed 0)", d), (f"JEM ({n} seeds)", c)):
        print(f"| {name} | {_cell(v['clean_acc'], 100)} | {_cell(v['pgd_L2_acc'], 100)} | {_cell(v['pgd_Linf_acc'], 100)} | "
              f"{_cell(v['autoattack_clean_acc'], 100)} | {_cell(v['autoattack_L2_acc'], 100)} | {_cell(v['autoattack_Linf_acc'], 100)} | {_cell(v['ece'], digits=3)} |")

    print("\nOOD detection, AUROC of logsumexp (adv. = OOD images pushed toward the data by PGD-20)\n")
    print("| model | noise | adv. noise | patches | adv. patches |")
    print("|---|---|---|---|---|")
    for name, v in (("DAT (EMA, seed 0)", d), (f"JEM ({n} seeds)", c)):
        print(f"| {name} | {_cell(v['uniform_noise_logsumexp'], digits=3)} | {_cell(v['uniform_noise_adv_logsumexp'], digits=3)} | "
              f"{_cell(v['patches_logsumexp'], digits=3)} | {_cell(v['patches_adv_logsumexp'], digits=3)} |")

    print("\nGeneration (2,000 samples vs the 10,000 test images, evaluation-network features; FD is not an FID)\n")
    print("| model, sampler | FD ↓ | IS-style | precision | recall | class agreement |")
    print("|---|---|---|---|---|---|")
    print(f"| DAT (EMA, seed 0), PGD sampler 40 steps from patch seeds | {_cell([dat_gen.get('fd')])} | "
          f"{_cell([dat_gen.get('inception_score')])} | {_cell([dat_gen.get('precision')], digits=3)} | "
          f"{_cell([dat_gen.get('recall')], digits=3)} | {_cell([dat_gen.get('class_agreement')], 100, 1)} |")
    for tag, label in (("buffer", "replay buffer (persistent chains)"), ("fresh", "fresh SGLD chains, 40 steps from uniform noise")):
        print(f"| JEM ({n} seeds), {label} | {_cell(c[tag + '_fd'])} | {_cell(c[tag + '_inception_score'])} | "
              f"{_cell(c[tag + '_precision'], digits=3)} | {_cell(c[tag + '_recall'], digits=3)} | "
              f"{_cell(c[tag + '_class_agreement'], 100, 1)} |")


if __name__ == "__main__":
    main()
