"""`dualat <verb>`: parses arguments, then calls the library function of the same name."""
from __future__ import annotations

import argparse
import os
import sys

from .errors import DualatError
from .speed import keep_large_buffers


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no traceback, exit 2
        self.print_usage(sys.stderr)
        verb = "" if self.prog == "dualat" else f" {self.prog.split()[-1]}"
        raise DualatError(f"{message} (see `dualat{verb} --help`)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dualat", description="Dual Adversarial Training: robust classifier + generator + explainer")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train stage 1 (adversarial training) then stage 2 (DAT)")
    t.add_argument("config", nargs="?", help="YAML file or preset name (e.g. fashion_mnist, digits)")
    t.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. stage2.optim.lr=0.001")
    t.add_argument("--out", help="run directory (default runs/<config-name>-<timestamp>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    e = sub.add_parser("train-evalnet", help="train the plain classifier used to measure samples")
    e.add_argument("config", help="YAML file or preset name (its data section is used)")
    e.add_argument("overrides", nargs="*")
    e.add_argument("--out", help="weights file (default: the cache, ~/.cache/dualat/evalnet/<dataset>.safetensors)")
    e.add_argument("--iterations", type=int, default=None)
    e.add_argument("--quiet", action="store_true")
    st = sub.add_parser("study", help="plain classifier, adversarial training, DAT and JEM over seeds: table + report")
    st.add_argument("config", help="YAML file or preset name (e.g. fashion_mnist)")
    st.add_argument("overrides", nargs="*", help="key=value overrides applied to every run")
    st.add_argument("--seeds", type=int, default=3)
    st.add_argument("--out", help="study folder (default runs/study-<config>); rerun to continue an unfinished study, "
                         "or start the same command again meanwhile to share the work")
    st.add_argument("--n-autoattack", type=int, default=1000, help="test images for AutoAttack L2 (0: skip)")
    st.add_argument("--n-samples", type=int, default=2000, help="samples per model for the generative metrics")
    st.add_argument("--n-ref", type=int, default=10000, help="test images for the reference statistics")
    st.add_argument("--n-test", type=int, default=None, help="test images for clean / PGD accuracy (default all)")
    st.add_argument("--steps", type=int, default=None, help="PGD-sampler steps (default stage2.t_max)")
    st.add_argument("--sgld-steps", type=int, default=None, help="fresh JEM chains' steps (default stage2.t_max)")
    st.add_argument("--ablations", default="all", help="all, none, or comma-separated names "
                    "(auc_threshold_0.6, t_max_20, batchnorm_active, noise_seeds)")
    st.add_argument("--quiet", action="store_true")

    r = sub.add_parser("report", help="a self-contained HTML page of a run: curves, tables, samples")
    r.add_argument("run_dir", help="run directory written by `dualat train`")
    r.add_argument("--out", help="page path (default RUN_DIR/report.html; images go to <stem>_files/ beside it)")

    v = sub.add_parser("eval", help="robustness, sample quality, OOD detection and calibration of a trained model",
                       description="Families run: those selected, or all four when none is selected.")
    v.add_argument("source", help="run directory, checkpoint file or pretrained:fashion-mnist")
    v.add_argument("--checkpoint", default="ema", help="ema (default), best_fid, best_robust, stage1 or last")
    v.add_argument("--robust", action="store_true", help="clean, PGD (L2 and Linf) and optionally AutoAttack accuracy")
    v.add_argument("--generative", action="store_true", help="FD, IS-style score, precision/recall/density/coverage")
    v.add_argument("--ood", action="store_true", help="OOD detection AUROC (logsumexp, max softmax), clean/adversarial")
    v.add_argument("--calibration", action="store_true", help="expected calibration error + reliability diagram")
    v.add_argument("--n", "--n-test", dest="n", type=int, default=None,
                   help="test images for accuracy/OOD/calibration (default: all; AutoAttack: 1000; "
                   "under torchrun write --n-test)")
    v.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    v.add_argument("--norm", choices=["L2", "Linf"], default=None, help="only this norm (default: both)")
    v.add_argument("--eps", default=None, help="budget of --norm (or of the run's norm)")
    v.add_argument("--eps-l2", default=None, help="L2 budget (default: the run's stage2.attack.eps)")
    v.add_argument("--eps-linf", default=None, help="Linf budget, e.g. 8/255 (default: 0.1 gray data, 8/255 CIFAR)")
    v.add_argument("--pgd-steps", type=int, default=20)
    v.add_argument("--pgd-step-size", type=float, default=None, help="PGD step (default 2.5*eps/steps)")
    v.add_argument("--restarts", type=int, default=1, help="PGD restarts with random start (worst case counts)")
    v.add_argument("--autoattack", action="store_true", help="also AutoAttack (pyautoattack), L2 and Linf")
    v.add_argument("--aa-version", choices=["standard", "rand", "custom"], default="standard")
    v.add_argument("--aa-attacks", default=None, help="comma-separated, for --aa-version custom (default apgd-ce)")
    v.add_argument("--aa-iters", type=int, default=None, help="override APGD/FAB iterations (non-standard)")
    v.add_argument("--n-samples", type=int, default=10000, help="class-balanced samples for generative metrics")
    v.add_argument("--sampler", choices=["pgd", "buffer", "sgld"], default=None,
                   help="pgd: DAT's sampler (default for DAT runs); buffer: a JEM run's replay buffer (default for "
                   "JEM runs); sgld: fresh SGLD chains of a JEM run")
    v.add_argument("--steps", type=int, default=None, help="sampling steps (default: the run's final T; "
                   "JEM: jem.eval_sgld_steps)")
    v.add_argument("--step-size", type=float, default=None, help="sampling step (default: 2x training step)")
    v.add_argument("--seeds", default=None, help="PGD sampler seeds: patches, patches_jitter, photos_more, mix[:F], "
                   "gaussian, noise or folder:DIR (default: the run's data.seeds, held-out split)")
    v.add_argument("--sweep-steps", default=None, metavar="N,N,...",
                   help="also measure the generative metrics of fresh samples at each of these step counts, "
                   "e.g. 10,20,40,80 (metrics.json: generative_sweep)")
    v.add_argument("--extractor", choices=["evalnet", "squeezenet", "inception"], default="evalnet",
                   help="feature space of the generative metrics (only inception gives an FID)")
    v.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="local pytorch-fid weights file pt_inception-2015-12-05-6726825d.pth (never downloaded)")
    v.add_argument("--ref-stats", default=None, metavar="PATH", help=".npz with mu, sigma (pytorch-fid format) for FD")
    v.add_argument("--ref-split", choices=["train", "test"], default="train", help="real images for the reference")
    v.add_argument("--n-ref", type=int, default=None, help="real images for the reference (default: --n-samples)")
    v.add_argument("--n-ood", type=int, default=2000, help="images per OOD set")
    v.add_argument("--ood-eps", default=None, help="L2 radius of the adversarial OOD push (default: the L2 eps)")
    v.add_argument("--ood-root", default=None, metavar="DIR", help="folder of the sibling dataset (e.g. MNIST files)")
    v.add_argument("--out", help="folder for metrics.json, samples, reference statistics and the reliability "
                   "diagram (default RUN/eval-<checkpoint>, or eval-<file stem> beside a checkpoint file)")
    v.add_argument("--amp", choices=["auto", "true", "false"], default=None,
                   help="arithmetic of the model's forwards: auto (bf16 where the hardware has it), true, false "
                   "(float32); default the run's own amp setting")
    v.add_argument("--quiet", action="store_true")

    s = sub.add_parser("sample", help="generate images: ascend f_y (or logsumexp) from held-out seeds")
    s.add_argument("source", help="run directory, checkpoint file or pretrained:fashion-mnist")
    s.add_argument("--n", "--number", dest="n", type=int, default=100,
                   help="number of samples (default 100; streamed in batches; under torchrun write --number)")
    s.add_argument("--classes", nargs="+", default=None,
                   help="classes to cycle through, e.g. 1 3 5 or 1,3,5 (default all)")
    s.add_argument("--steps", type=int, default=None, help="PGD steps (default: the run's final curriculum T)")
    s.add_argument("--step-size", type=float, default=None, help="L2 step (default: 2x stage2.step_size)")
    s.add_argument("--seeds", default=None,
                   help="noise, gaussian, patches, patches_jitter, photos_more, mix[:F] or folder:DIR "
                   "(default: the run's data.seeds, held-out split)")
    s.add_argument("--unconditional", action="store_true", help="ascend logsumexp f(x) instead of one class logit")
    s.add_argument("--checkpoint", default="ema", help="ema (default), best_fid, best_robust, stage1 or last")
    s.add_argument("--png", action="store_true", help="also write every sample as png/<index>_y<class>.png")
    s.add_argument("--trajectory", type=int, default=None, metavar="K",
                   help="trajectory.png: the first 10 samples every K steps")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--seed", type=int, default=0, help="seed of the seed draws (same seed, same samples)")
    s.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    s.add_argument("--out", help="folder (default RUN/samples-<checkpoint>-<time>, or beside a checkpoint file)")
    s.add_argument("--amp", choices=["auto", "true", "false"], default=None,
                   help="arithmetic of the model's forwards: auto (bf16 where the hardware has it), true, false "
                   "(float32); default the run's own amp setting")
    s.add_argument("--quiet", action="store_true")

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
    x.add_argument("--steps", type=int, default=300, help="PGD steps per radius (default 300)")
    x.add_argument("--momentum", type=float, default=0.0, help="momentum of the normalised gradients (default 0)")
    x.add_argument("--n", type=int, default=10, help="how many images `--images misclassified` takes (default 10)")
    x.add_argument("--checkpoint", default="ema", help="ema (default), best_fid, best_robust, stage1 or last")
    x.add_argument("--batch-size", type=int, default=256)
    x.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    x.add_argument("--out", help="folder (default RUN/explain-<checkpoint>-<time>)")
    x.add_argument("--amp", choices=["auto", "true", "false"], default=None,
                   help="arithmetic of the model's forwards: auto (bf16 where the hardware has it), true, false "
                   "(float32); default the run's own amp setting")
    x.add_argument("--quiet", action="store_true")
    return p


def _eval(args) -> int:
    from pathlib import Path

    from .evaluate.run import evaluate, format_table
    chosen = {f: getattr(args, f) for f in ("robust", "generative", "ood", "calibration")}
    every = not any(chosen.values())
    from .loading import PRETRAINED_PREFIX, output_base
    src = Path(args.source)
    out = args.out or (output_base(args.source) / f"eval-{args.checkpoint}"
                       if src.is_dir() or args.source.startswith(PRETRAINED_PREFIX) else src.parent / f"eval-{src.stem}")
    result = evaluate(args.source, args.checkpoint, robust=every or chosen["robust"],
                      generative=every or chosen["generative"], ood=every or chosen["ood"],
                      calibrate=every or chosen["calibration"], n=args.n, norm=args.norm, eps=args.eps,
                      eps_l2=args.eps_l2, eps_linf=args.eps_linf, pgd_steps=args.pgd_steps,
                      pgd_step_size=args.pgd_step_size, restarts=args.restarts, autoattack=args.autoattack,
                      aa_version=args.aa_version, aa_n_iter=args.aa_iters,
                      aa_attacks=args.aa_attacks.split(",") if args.aa_attacks else None,
                      n_samples=args.n_samples, steps=args.steps, step_size=args.step_size, sampler=args.sampler,
                      extractor=args.extractor,
                      inception_weights=args.inception_weights, ref_stats=args.ref_stats, ref_split=args.ref_split,
                      n_ref=args.n_ref, n_ood=args.n_ood, ood_eps=args.ood_eps, ood_root=args.ood_root,
                      out=out, device=args.device, show_progress=not args.quiet, sweep_steps=args.sweep_steps,
                      seeds=args.seeds, amp=_amp(args.amp))
    if _reports():
        print(format_table(result))
        if "generative_sweep" in result:
            from .evaluate.sweep import format_sweep
            print("\n" + format_sweep(result["generative_sweep"]))
        if out:
            files = sorted(p.name for p in Path(out).iterdir() if p.name != "metrics.json") if Path(out).is_dir() else []
            print(f"written: {Path(out) / 'metrics.json'}" + (f" (and {', '.join(files)} beside it)" if files else ""))
    return 0


def _train(args) -> int:
    from .train import train
    config, overrides = args.config, list(args.overrides)
    if args.resume:
        # with --resume every positional is an override of the run's own config
        if config and "=" in config:
            overrides.insert(0, config)
        elif config:
            raise DualatError(f"--resume takes the run's own config; drop {config!r} or pass it as key=value overrides")
        config = None
    elif not config:
        raise DualatError("give a config: `dualat train fashion_mnist` (a preset) or `dualat train my.yaml`")
    run_dir = train(config, overrides, out=args.out, resume=args.resume, show_progress=not args.quiet)
    if _reports():
        print(f"run directory: {run_dir}")
    return 0


def _reports() -> bool:
    """Under torchrun, rank 0 alone prints results."""
    return os.environ.get("RANK", "0") == "0"


def _one_process(verb: str) -> None:
    from .distributed import from_env
    if from_env().enabled:
        raise DualatError(f"dualat {verb} runs in one process; launch it without torchrun "
                          "(train, eval and sample use several)")


def _train_evalnet(args) -> int:
    _one_process("train-evalnet")
    from .config import load_config
    from .train import train_evalnet
    cfg = load_config(args.config, args.overrides)
    path = train_evalnet(cfg.data, args.out, iterations=args.iterations or cfg.eval.evalnet_iterations,
                         show_progress=not args.quiet)
    print(f"evaluation network: {path} (card: {path.with_suffix('.json')})")
    return 0


def _numbers(values, kind, what):
    """['1,3', '5'] -> [1, 3, 5]: lists given with spaces or commas."""
    items = [v for text in values or [] for v in text.split(",") if v.strip()]
    try:
        return [kind(v) for v in items] or None
    except ValueError:
        raise DualatError(f"{what} takes numbers, got {' '.join(values)!r}") from None


def _device(name):
    import torch
    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def _amp(text):
    """--amp auto|true|false -> the amp setting; None = the run's own."""
    return {"true": True, "false": False}.get(text, text)


def _sample(args) -> int:
    from .sample import sample_to_dir
    record = sample_to_dir(args.source, args.out, n=args.n, classes=_numbers(args.classes, int, "--classes"),
                           steps=args.steps, step_size=args.step_size, seeds=args.seeds,
                           unconditional=args.unconditional, seed=args.seed, checkpoint=args.checkpoint,
                           batch_size=args.batch_size, png=args.png, trajectory=args.trajectory,
                           device=_device(args.device), show_progress=not args.quiet, command=sys.argv,
                           amp=_amp(args.amp))
    if _reports():
        print(f"{record['n']} samples ({record['steps']} steps of {record['step_size']:g}): {record['out']}")
    return 0


def _explain(args) -> int:
    _one_process("explain")
    from .explain import explain_to_dir
    record = explain_to_dir(args.source, args.images, target=args.target,
                            radii=_numbers(args.radii, float, "--radii"), steps=args.steps, n=args.n,
                            checkpoint=args.checkpoint, out=args.out, momentum=args.momentum,
                            batch_size=args.batch_size, device=_device(args.device),
                            show_progress=not args.quiet, command=sys.argv, amp=_amp(args.amp))
    print(f"counterfactuals of {len(record['inputs'])} images at radii {record['radii']}: {record['out']}")
    return 0


def _study(args) -> int:
    from .study import study
    abl = True if args.ablations == "all" else [] if args.ablations == "none" else args.ablations.split(",")
    out = study(args.config, args.seeds, args.out, args.overrides, n_autoattack=args.n_autoattack,
                n_samples=args.n_samples, n_ref=args.n_ref, n_test=args.n_test, sample_steps=args.steps,
                sgld_steps=args.sgld_steps, ablations=abl, show_progress=not args.quiet)
    print(f"study: {out / 'results.md'}, {out / 'report.html'}")
    return 0


def _landscape(args) -> int:
    from .landscape import landscape
    record = landscape(args.runs, args.out, checkpoints=args.checkpoints, resolution=args.resolution,
                       n_paths=args.paths, steps=args.steps, step_size=args.step_size, seed=args.seed,
                       show_progress=not args.quiet)
    print(f"landscape of {len(record['panels'])} models: {record['out']} (numbers: "
          f"{record['out'].rsplit('.', 1)[0]}.json)")
    return 0


def _report(args) -> int:
    from .report import report
    print(f"report: {report(args.run_dir, args.out)}")
    return 0


VERBS = {"landscape": _landscape, "study": _study, "report": _report, "train": _train, "train-evalnet": _train_evalnet, "eval": _eval, "sample": _sample, "explain": _explain}


def _close_bars() -> None:
    """End progress bars an error interrupted, so the error starts on a line of its own."""
    try:
        from tqdm import tqdm
        for bar in list(getattr(tqdm, "_instances", [])):
            bar.close()
    except Exception:  # cosmetic only
        pass


def _parse(argv):
    """Overrides (key=value) may also follow the options: `dualat study fashion_mnist --seeds 3 threads=1`."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides or []) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv=None) -> int:
    try:
        args = _parse(argv)
        keep_large_buffers()  # this process is the CLI's own: large tensor buffers stay in the heap
        return VERBS[args.verb](args)
    except DualatError as exc:
        _close_bars()
        print(f"dualat: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused (permissions, a full disk, a name too long): not a bug
        _close_bars()
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"dualat: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_bars()
        print("dualat: interrupted; a training run continues with `dualat train --resume RUN_DIR`", file=sys.stderr)
        return 130
