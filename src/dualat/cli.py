"""`dualat <verb>`: parses arguments, then calls the library function of the same name."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .cli_args import build_parser
from .config import load_config
from .distributed import from_env
from .errors import DualatError
from .evaluate.run import evaluate, format_table
from .evaluate.settings import EvaluateOptions
from .evaluate.sweep import format_sweep
from .explain import explain_to_dir
from .explain_options import ExplainOptions
from .landscape import LandscapeOptions, landscape
from .loading import default_output
from .report import report
from .sample import sample_to_dir
from .sample_options import SampleOptions
from .speed import keep_large_buffers
from .study import StudyOptions, study
from .evaluate.evalnet import train_evalnet
from .training import train


def _eval(args) -> int:
    chosen = {f: getattr(args, f) for f in ("robust", "generative", "ood", "calibration", "counterfactuals")}
    every = not any(chosen.values())  # the first four; counterfactuals only when asked for
    out = args.out or default_output(args.source, "eval", args.checkpoint, stamped=False)
    options = EvaluateOptions.of(
        args.checkpoint, robust=every or chosen["robust"], generative=every or chosen["generative"],
        ood=every or chosen["ood"], calibrate=every or chosen["calibration"], n=args.n, norm=args.norm, eps=args.eps,
        eps_l2=args.eps_l2, eps_linf=args.eps_linf, pgd_steps=args.pgd_steps, pgd_step_size=args.pgd_step_size,
        restarts=args.restarts, autoattack=args.autoattack, aa_version=args.aa_version, aa_n_iter=args.aa_iters,
        aa_attacks=args.aa_attacks.split(",") if args.aa_attacks else None, n_samples=args.n_samples,
        steps=args.steps, step_size=args.step_size, sampler=args.sampler, extractor=args.extractor,
        inception_weights=args.inception_weights, ref_stats=args.ref_stats, ref_split=args.ref_split,
        n_ref=args.n_ref, n_ood=args.n_ood, ood_eps=args.ood_eps, ood_root=args.ood_root, device=args.device,
        show_progress=not args.quiet, sweep_steps=args.sweep_steps, seeds=args.seeds, amp=_amp(args.amp),
        counterfactuals=chosen["counterfactuals"],
        **_given(cf_n=args.cf_n, cf_target=args.cf_target, radii=_numbers(args.radii, float, "--radii"),
                 cf_steps=args.cf_steps, judge=args.judge))
    result = evaluate(args.source, options=options, out=out)
    if _reports():
        print(format_table(result))
        if "generative_sweep" in result:
            print("\n" + format_sweep(result["generative_sweep"]))
        if out:
            files = sorted(p.name for p in Path(out).iterdir() if p.name != "metrics.json") if Path(out).is_dir() else []
            print(f"written: {Path(out) / 'metrics.json'}" + (f" (and {', '.join(files)} beside it)" if files else ""))
    return 0


def _given(**options) -> dict:
    """The options given on the command line (None: the library's default)."""
    return {k: v for k, v in options.items() if v is not None}


def _train(args) -> int:
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
    if from_env().enabled:
        raise DualatError(f"dualat {verb} runs in one process; launch it without torchrun "
                          "(train, eval and sample use several)")


def _train_evalnet(args) -> int:
    _one_process("train-evalnet")
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
    options = SampleOptions(n=args.n, classes=_numbers(args.classes, int, "--classes"), steps=args.steps,
                            step_size=args.step_size, seeds=args.seeds, unconditional=args.unconditional,
                            seed=args.seed, checkpoint=args.checkpoint, batch_size=args.batch_size, png=args.png,
                            trajectory=args.trajectory, device=_device(args.device), show_progress=not args.quiet,
                            command=sys.argv, amp=_amp(args.amp))
    record = sample_to_dir(args.source, args.out, options)
    if _reports():
        print(f"{record['n']} samples ({record['steps']} steps of {record['step_size']:g}): {record['out']}")
    return 0


def _explain(args) -> int:
    _one_process("explain")
    options = ExplainOptions(target=args.target, radii=_numbers(args.radii, float, "--radii"), steps=args.steps,
                             n=args.n, checkpoint=args.checkpoint, momentum=args.momentum, batch_size=args.batch_size,
                             device=_device(args.device), show_progress=not args.quiet, command=sys.argv,
                             amp=_amp(args.amp))
    record = explain_to_dir(args.source, args.images, options, out=args.out)
    print(f"counterfactuals of {len(record['inputs'])} images at radii {record['radii']}: {record['out']}")
    return 0


def _study(args) -> int:
    abl = True if args.ablations == "all" else [] if args.ablations == "none" else args.ablations.split(",")
    options = StudyOptions(seeds=args.seeds, n_autoattack=args.n_autoattack, n_samples=args.n_samples,
                           n_ref=args.n_ref, n_test=args.n_test, sample_steps=args.steps, sgld_steps=args.sgld_steps,
                           ablations=abl, show_progress=not args.quiet,
                           counterfactuals=args.counterfactuals)
    out = study(args.config, args.out, args.overrides, options)
    print(f"study: {out / 'results.md'}, {out / 'report.html'}")
    return 0


def _landscape(args) -> int:
    options = LandscapeOptions(checkpoints=args.checkpoints, resolution=args.resolution, n_paths=args.paths,
                               steps=args.steps, step_size=args.step_size, seed=args.seed, show_progress=not args.quiet)
    record = landscape(args.runs, args.out, options)
    print(f"landscape of {len(record['panels'])} models: {record['out']} (numbers: "
          f"{record['out'].rsplit('.', 1)[0]}.json)")
    return 0


def _report(args) -> int:
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
