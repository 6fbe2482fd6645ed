"""The command line's grammar: every verb's arguments (argparse), with one-line errors and
whole-number types that refuse negative counts. cli.py runs what these parse."""
from __future__ import annotations

import argparse
import sys

from .errors import DualatError
from .samplers import SAMPLERS


def count(text: str) -> int:
    """An argparse type: a whole number >= 1 (a count of images, samples, steps...)."""
    return _whole(text, 1)


def count0(text: str) -> int:
    """An argparse type: a whole number >= 0 (0 = none / skip)."""
    return _whole(text, 0)


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no traceback, exit 2
        self.print_usage(sys.stderr)
        verb = "" if self.prog == "dualat" else f" {self.prog.split()[-1]}"
        raise DualatError(f"{message} (see `dualat{verb} --help`)")


def _amp_and_quiet(p) -> None:
    """--amp and --quiet, the last options of eval, sample and explain."""
    p.add_argument("--amp", choices=["auto", "true", "false"], default=None,
                   help="arithmetic of the model's forwards: auto (bf16 where the hardware has it), true, false "
                   "(float32); default the run's own amp setting")
    p.add_argument("--quiet", action="store_true")


def _counterfactual_options(v) -> None:
    """`dualat eval --counterfactuals` and its settings (evaluate/counterfactuals.py)."""
    v.add_argument("--counterfactuals", action="store_true", help="counterfactual explanations measured: validity "
                   "under the model and an independent judge, closeness, realism (FD, k-NN ratio, IM1/IM2)")
    v.add_argument("--cf-n", type=count, default=None, help="class-balanced test images to explain (default 500)")
    v.add_argument("--cf-target", default=None, help="wrong (the model's most likely wrong class, default), "
                   "wrong-judge (the judge's: the same targets for every model), true, all, or a class index")
    v.add_argument("--radii", nargs="+", default=None, help="L2 radii (default: dualat explain's, 1..6 x the run's "
                   "L2 training eps)")
    v.add_argument("--cf-steps", type=count, default=None, help="PGD steps per radius (default 50)")
    v.add_argument("--judge", default=None, metavar="PATH", help="run directory / checkpoint / pretrained:NAME that "
                   "judges the counterfactuals (default: the evaluation network)")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="dualat", description="Dual Adversarial Training: robust classifier + generator + explainer")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train stage 1 (adversarial training) then stage 2 (DAT)")
    t.add_argument("config", nargs="?", help="YAML file or preset name (e.g. fashion_mnist, digits)")
    t.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. stage2.optim.lr=0.001")
    t.add_argument("--out", help="run directory (default runs/<config-name>-<timestamp>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    e = sub.add_parser("train-evalnet", help="train the plain classifier used to measure samples")
    e.add_argument("config", help="YAML file or preset name (its data section is used)")
    e.add_argument("overrides", nargs="*")
    e.add_argument("--out", help="weights file (default: the cache, "
                   "~/.cache/dualat/evalnet/<dataset>-<shape>-k<classes>-it<iterations>.safetensors)")
    e.add_argument("--iterations", type=count, default=None)
    e.add_argument("--quiet", action="store_true")
    st = sub.add_parser("study", help="plain classifier, adversarial training, DAT and JEM over seeds: table + report")
    st.add_argument("config", help="YAML file or preset name (e.g. fashion_mnist)")
    st.add_argument("overrides", nargs="*", help="key=value overrides applied to every run")
    st.add_argument("--seeds", type=int, default=3)
    st.add_argument("--out", help="study folder (default runs/study-<config>); rerun to continue an unfinished study, "
                         "or start the same command again meanwhile to share the work")
    st.add_argument("--n-autoattack", type=count0, default=1000, help="test images for AutoAttack L2 (0: skip)")
    st.add_argument("--n-samples", type=count, default=2000, help="samples per model for the generative metrics")
    st.add_argument("--n-ref", type=count, default=10000, help="test images for the reference statistics")
    st.add_argument("--n-test", type=count, default=None, help="test images for clean / PGD accuracy (default all)")
    st.add_argument("--steps", type=count0, default=None, help="PGD-sampler steps (default: each run's chosen steps, "
                    "sample_steps.json, else its final T)")
    st.add_argument("--sgld-steps", type=count0, default=None, help="fresh JEM chains' steps (default stage2.t_max)")
    st.add_argument("--counterfactuals", action="store_true", help="also measure every model's counterfactuals "
                    "(dualat eval --counterfactuals at 1, 2, 3 x the L2 training eps, the same images and targets)")
    st.add_argument("--ablations", default="all", help="all, none, or comma-separated names "
                    "(auc_threshold_0.6, auc_threshold_0.8, t_max_20, batchnorm_active, noise_seeds, patch_seeds, "
                    "gaussian_seeds); one the config already has is skipped")
    st.add_argument("--quiet", action="store_true")

    r = sub.add_parser("report", help="a self-contained HTML page of a run: curves, tables, samples")
    r.add_argument("run_dir", help="run directory written by `dualat train`")
    r.add_argument("--out", help="page path (default RUN_DIR/report.html; images go to <stem>_files/ beside it)")

    v = sub.add_parser("eval", help="robustness, sample quality, OOD detection and calibration of a trained model",
                       description="Families run: those selected, or the first four when none is selected "
                       "(--counterfactuals only when asked for).")
    v.add_argument("source", help="run directory, checkpoint file or pretrained:fashion-mnist")
    v.add_argument("--checkpoint", default="ema", help="ema (default), best_fid, best_robust, stage1 or last")
    v.add_argument("--robust", action="store_true", help="clean, PGD (L2 and Linf) and optionally AutoAttack accuracy")
    v.add_argument("--generative", action="store_true", help="FD, IS-style score, precision/recall/density/coverage")
    v.add_argument("--ood", action="store_true", help="OOD detection AUROC (logsumexp, max softmax), clean/adversarial")
    v.add_argument("--calibration", action="store_true", help="expected calibration error + reliability diagram")
    v.add_argument("--n", "--n-test", dest="n", type=count, default=None,
                   help="test images for accuracy/OOD/calibration (default: all; AutoAttack: 1000; "
                   "under torchrun write --n-test)")
    v.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    v.add_argument("--norm", choices=["L2", "Linf"], default=None, help="only this norm (default: both)")
    v.add_argument("--eps", default=None, help="budget of --norm (or of the run's norm)")
    v.add_argument("--eps-l2", default=None, help="L2 budget (default: the run's threat.eps)")
    v.add_argument("--eps-linf", default=None, help="Linf budget, e.g. 8/255 (default: 0.1 gray data, 8/255 CIFAR)")
    v.add_argument("--pgd-steps", type=count, default=20)
    v.add_argument("--pgd-step-size", type=float, default=None, help="PGD step (default 2.5*eps/steps)")
    v.add_argument("--restarts", type=count, default=1, help="PGD restarts with random start (worst case counts)")
    v.add_argument("--autoattack", action="store_true", help="also AutoAttack (pyautoattack), L2 and Linf")
    v.add_argument("--aa-version", choices=["standard", "rand", "custom"], default="standard")
    v.add_argument("--aa-attacks", default=None, help="comma-separated, for --aa-version custom (default apgd-ce)")
    v.add_argument("--aa-iters", type=count, default=None, help="override APGD/FAB iterations (non-standard)")
    v.add_argument("--n-samples", type=count, default=10000, help="class-balanced samples for generative metrics")
    v.add_argument("--sampler", choices=list(SAMPLERS), default=None,
                   help="pgd: DAT's sampler (default for DAT runs); buffer: a JEM run's replay buffer (default for "
                   "JEM runs); sgld: fresh SGLD chains of a JEM run")
    v.add_argument("--steps", type=count0, default=None, help="sampling steps (default: the steps the run chose at "
                   "the end of stage 2, sample_steps.json, else its final T; JEM: jem.eval_sgld_steps)")
    v.add_argument("--step-size", type=float, default=None, help="sampling step (default: 2x training step)")
    v.add_argument("--seeds", default=None, help="PGD sampler seeds: patches, patches_jitter, photos_more, mix[:F], "
                   "gaussian[_lowrank:K|_diag|_coarse:S], mixture:A+B, noise or folder:DIR (default: the run's "
                   "data.seeds, held-out split)")
    v.add_argument("--sweep-steps", default=None, metavar="N,N,...",
                   help="also measure the generative metrics of fresh samples at each of these step counts, "
                   "e.g. 10,20,40,80 (metrics.json: generative_sweep)")
    v.add_argument("--extractor", choices=["evalnet", "squeezenet", "inception"], default="evalnet",
                   help="feature space of the generative metrics (only inception gives an FID)")
    v.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="local pytorch-fid weights file pt_inception-2015-12-05-6726825d.pth (never downloaded)")
    v.add_argument("--ref-stats", default=None, metavar="PATH", help=".npz with mu, sigma (pytorch-fid format) for FD")
    v.add_argument("--ref-split", choices=["train", "test"], default="train", help="real images for the reference")
    v.add_argument("--n-ref", type=count, default=None, help="real images for the reference (default: --n-samples)")
    v.add_argument("--n-ood", type=count, default=2000, help="images per OOD set")
    v.add_argument("--ood-eps", default=None, help="L2 radius of the adversarial OOD push (default: the L2 eps)")
    v.add_argument("--ood-root", default=None, metavar="DIR", help="folder of the sibling dataset (e.g. MNIST files)")
    _counterfactual_options(v)
    v.add_argument("--out", help="folder for metrics.json, samples, reference statistics and the reliability "
                   "diagram (default RUN/eval-<checkpoint>, or eval-<file stem> beside a checkpoint file)")
    _amp_and_quiet(v)

    s = sub.add_parser("sample", help="generate images: ascend f_y (or logsumexp) from held-out seeds")
    s.add_argument("source", help="run directory, checkpoint file or pretrained:fashion-mnist")
    s.add_argument("--n", "--number", dest="n", type=int, default=100,
                   help="number of samples (default 100; streamed in batches; under torchrun write --number)")
    s.add_argument("--classes", nargs="+", default=None,
                   help="classes to cycle through, e.g. 1 3 5 or 1,3,5 (default all)")
    s.add_argument("--steps", type=count0, default=None, help="PGD steps (default: the steps the run chose at the end "
                   "of stage 2, sample_steps.json, else its final curriculum T)")
    s.add_argument("--step-size", type=float, default=None, help="L2 step (default: 2x stage2.step_size)")
    s.add_argument("--seeds", default=None,
                   help="noise, gaussian[_lowrank:K|_diag|_coarse:S], patches, patches_jitter, photos_more, mix[:F], "
                   "mixture:A+B or folder:DIR (default: the run's data.seeds, held-out split)")
    s.add_argument("--unconditional", action="store_true", help="ascend logsumexp f(x) instead of one class logit")
    s.add_argument("--checkpoint", default="ema", help="ema (default), best_fid, best_robust, stage1 or last")
    s.add_argument("--png", action="store_true", help="also write every sample as png/<index>_y<class>.png")
    s.add_argument("--trajectory", type=int, default=None, metavar="K",
                   help="trajectory.png: the first 10 samples every K steps")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--seed", type=int, default=0, help="seed of the seed draws (same seed, same samples)")
    s.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    s.add_argument("--out", help="folder (default RUN/samples-<checkpoint>-<time>, or beside a checkpoint file)")
    _amp_and_quiet(s)

    ls = sub.add_parser("landscape", help="toy2d runs: energy heat map, decision regions, data and sampling paths")
    ls.add_argument("runs", nargs="+", metavar="RUN_DIR", help="a toy2d run (stage 1 and DAT panels), then optionally "
                    "more runs to compare (e.g. method=plain, method=jem)")
    ls.add_argument("--out", help="PNG path (default FIRST_RUN/landscape.png; landscape.json beside it)")
    ls.add_argument("--checkpoints", nargs="+", default=None, help="panels of the first run (default stage1 ema)")
    ls.add_argument("--resolution", type=int, default=160, help="grid points per side (default 160)")
    ls.add_argument("--paths", type=int, default=12, help="sampling trajectories per panel (default 12)")
    ls.add_argument("--steps", type=int, default=None, help="sampler steps (default: the first run's final T)")
    ls.add_argument("--step-size", type=float, default=None, help="sampler step (default 2x stage2.step_size)")
    ls.add_argument("--seed", type=int, default=0)
    ls.add_argument("--quiet", action="store_true")

    x = sub.add_parser("explain", help="counterfactual explanations: targeted PGD inside L2 balls of growing radius")
    x.add_argument("source", help="run directory, checkpoint file or pretrained:fashion-mnist")
    x.add_argument("--images", required=True, help="test indices (0,5,17), misclassified, or image files (a.png,b.jpg)")
    x.add_argument("--target", default=None, help="class index, true, predicted or all; comma-separated for several "
                   "(default true,predicted; predicted for image files)")
    x.add_argument("--radii", nargs="+", default=None, help="L2 radii (default six: 1..6 x the run's L2 training eps)")
    x.add_argument("--steps", type=count0, default=300, help="PGD steps per radius (default 300)")
    x.add_argument("--momentum", type=float, default=0.0, help="momentum of the normalised gradients (default 0)")
    x.add_argument("--n", type=count, default=10, help="how many images `--images misclassified` takes (default 10)")
    x.add_argument("--checkpoint", default="ema", help="ema (default), best_fid, best_robust, stage1 or last")
    x.add_argument("--batch-size", type=count, default=256)
    x.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    x.add_argument("--out", help="folder (default RUN/explain-<checkpoint>-<time>)")
    _amp_and_quiet(x)
    return p
