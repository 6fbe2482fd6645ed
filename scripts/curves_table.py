"""Print a markdown table of a run's training curves from its metrics.jsonl.

usage: python scripts/curves_table.py RUN_DIR [--every 50]
"""
import argparse
import json
from pathlib import Path

COLUMNS = [("iteration", "iter", "{:d}"), ("T", "T (mean)", "{:.1f}"), ("bce", "BCE", "{:.3f}"),
           ("auc", "AUC", "{:.3f}"), ("ce", "adv. CE", "{:.3f}"), ("adv_acc", "adv. train acc", "{:.3f}"),
           ("e_real", "E(real)", "{:.2f}"), ("e_contrastive", "E(contrastive)", "{:.2f}")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--every", type=int, default=50)
    args = ap.parse_args()
    rows = [json.loads(line) for line in (Path(args.run_dir) / "metrics.jsonl").read_text().splitlines()]
    stage2 = [r for r in rows if r.get("stage") == 2 and "bce" in r and r["iteration"] % args.every == 0]
    print("| " + " | ".join(c[1] for c in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in stage2:
        print("| " + " | ".join(fmt.format(r[key]) for key, _, fmt in COLUMNS) + " |")
    evals = [r for r in rows if r.get("event") in ("stage1_eval", "eval")]
    print("\n| stage | iter | clean acc | PGD acc | FD (evalnet, n) | class agreement | sample steps |")
    print("|---|---|---|---|---|---|---|")
    for r in evals:
        fd = f"{r['fd']:.2f} ({r['n_samples']})" if "fd" in r else "-"
        agree = f"{r['class_agreement']:.3f}" if "class_agreement" in r else "-"
        print(f"| {r['stage']} | {r['iteration']} | {r['clean_acc']:.3f} | {r['robust_acc']:.3f} | {fd} | {agree} | "
              f"{r.get('sample_steps', '-')} |")


if __name__ == "__main__":
    main()
