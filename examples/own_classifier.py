"""Your own robust classifier as stage 1: start DAT from a checkpoint saved by another code base.

Adversarial training is the expensive half of DAT, and many users already have a robust
classifier: from RobustBench, from MadryLab's `robustness` library, or from their own
`nn.DataParallel` training loop. This example plays that user. It adversarially trains a small
CNN on the bundled digits in a loop of its own (L2 PGD through `dualat.pgd`, a few seconds) and
saves it the way MadryLab `robustness` does: `{'model': {'module.model.<backbone>',
'module.attacker.model.<backbone>', 'module.normalizer.*'}, 'epoch': ...}`, written with plain
`torch.save`. DAT then starts from that file (`stage1.init=PATH`, `stage1.iterations=0`: no
adversarial training of ours) and runs stage 2 only. The key report in the run's log names the
prefix it stripped (`module.model.` -> our `net.`) and the tensors it left out (the attacker's copy
and the normaliser). Finally the example compares the foreign classifier itself, used as a
generator (checkpoint `stage1`), with the DAT model that grew from it: the same sampler, the same
held-out seeds, Frechet distance of the samples to the test set in the evaluation network's
features (not an FID). It asserts the key report, that stage 2 started from exactly the file's
weights, and that DAT's samples are closer to the data (lower FD) than those of its stage 1.

    python examples/own_classifier.py [WORK_DIR]      (default: a temporary folder)
"""
import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import dualat
from dualat.checkpoint import safe_load
from dualat.data import load_dataset
from dualat.evaluate.run import evaluate
from dualat.pgd import L2Ball, pgd


def robust_classifier_elsewhere(steps: int = 200, seed: int = 0) -> torch.nn.Module:
    """Someone else's training loop: Madry L2 adversarial training (eps 0.5) of a small CNN."""
    torch.manual_seed(seed)
    train = load_dataset("digits", "train")
    model = dualat.create_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(train), (64,), generator=g)
        x, y = train.batch(idx)
        model.eval()
        x_adv = pgd(model, x, y, objective="ce", threat=L2Ball(0.5), steps=5, step_size=0.25)
        model.train()
        loss = F.cross_entropy(model(x_adv), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def save_like_madrylab(model, path: Path) -> Path:
    backbone = model.net.state_dict()  # dualat's Classifier = input normalisation + `net` backbone
    sd = {"module.model." + k: v for k, v in backbone.items()}
    sd.update({"module.attacker.model." + k: v for k, v in backbone.items()})
    sd.update({"module.normalizer.new_mean": torch.zeros(1, 1, 1), "module.normalizer.new_std": torch.ones(1, 1, 1)})
    torch.save({"model": sd, "optimizer": None, "schedule": None, "epoch": 3}, path)
    return path


def main(work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    theirs = robust_classifier_elsewhere()
    path = save_like_madrylab(theirs, work / "checkpoint.pt.best")
    run = dualat.train("digits", [f"stage1.init={path}", "stage1.iterations=0", "stage2.iterations=100",
                                  "eval.every=100", "eval.n_test=100", "eval.n_samples=50", "threads=1"],
                       out=work / "run", show_progress=False)

    report = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
              if '"stage1_init"' in line][0]
    print(f"key report: loaded {report['loaded']} tensors, renamed {report['renamed']}, "
          f"missing {report['missing']}, {len(report['unexpected'])} unexpected (e.g. {report['unexpected'][:2]})")
    assert report["renamed"] == {"module.model.": "net."}
    assert report["missing"] == ["mean", "std"]  # the input normalisation stays as the preset sets it
    assert all(k.startswith(("attacker.model.", "normalizer.")) for k in report["unexpected"])
    stage1 = safe_load(run / "stage1.pt")["model"]
    for k, v in theirs.net.state_dict().items():
        assert torch.equal(stage1["net." + k], v), k

    fd = {}
    for ck in ("stage1", "ema"):
        m = evaluate(run, ck, robust=True, generative=True, ood=False, calibrate=False, n=200, pgd_steps=5,
                     norm="L2", n_samples=400, ref_split="test", n_ref=297, show_progress=False,
                     out=run / f"eval-{ck}")
        fd[ck] = m["fd"]
        print(f"{ck:6s}: clean {m['clean_acc']:.1%}, PGD-5 L2 {m['pgd_L2_acc']:.1%}, FD of 400 samples "
              f"{m['fd']:.2f} ({m['sample_steps']} steps)")
    assert fd["ema"] < fd["stage1"], fd
    return {"run": run, "fd": fd, "report": report}


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
