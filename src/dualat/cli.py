"""`dualat <verb>`: parses arguments, then calls the library function of the same name."""
from __future__ import annotations

import argparse
import sys

from .errors import DualatError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no traceback, exit 2
        self.print_usage(sys.stderr)
        raise DualatError(f"{message} (see `dualat {self.prog.split()[-1]} --help`)")


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
    return p


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
    print(f"run directory: {run_dir}")
    return 0


def _train_evalnet(args) -> int:
    from .config import load_config
    from .train import train_evalnet
    cfg = load_config(args.config, args.overrides)
    path = train_evalnet(cfg.data, args.out, iterations=args.iterations or cfg.eval.evalnet_iterations,
                         show_progress=not args.quiet)
    print(f"evaluation network: {path} (card: {path.with_suffix('.json')})")
    return 0


VERBS = {"train": _train, "train-evalnet": _train_evalnet}


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return VERBS[args.verb](args)
    except DualatError as exc:
        print(f"dualat: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dualat: interrupted; a training run continues with `dualat train --resume RUN_DIR`", file=sys.stderr)
        return 130
