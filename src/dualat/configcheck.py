"""Validation of a Config: every key's range here, and every name (dataset, seed source,
augmentation, model and its options) by the registry that owns the names. `validate(cfg)` raises
DualatError naming the first bad key.

The registries live in a higher layer (data/, models/), so they add their checks to NAME_CHECKS
when they are imported (`@name_check`), the way each model adds itself to the model registry;
importing `dualat` imports them all before any config is read.
"""
from __future__ import annotations

import difflib
import math
import re
from typing import Callable

from .errors import DualatError
from .methods import METHODS

NAME_CHECKS: list[Callable] = []   # fn(cfg) -> None, raising DualatError: one per registry


def name_check(fn: Callable) -> Callable:
    """Register `fn(cfg)`, a check of the names a registry owns; validate() runs it. A decorator."""
    if fn not in NAME_CHECKS:
        NAME_CHECKS.append(fn)
    return fn


def check(ok: bool, key: str, message: str) -> None:
    """Raise DualatError("config key KEY MESSAGE") unless `ok`."""
    if not ok:
        raise DualatError(f"config key {key} {message}")


def check_choice(value, key: str, choices) -> None:
    """Raise DualatError naming KEY, the choices and the closest one unless `value` is a choice."""
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise DualatError(f"config key {key}={value!r} is not one of {', '.join(choices)}{hint}")


def _validate_optim(o, key: str) -> None:
    check_choice(o.optimizer, f"{key}.optimizer", ["sgd", "adamw"])
    check_choice(o.schedule, f"{key}.schedule", ["cosine", "constant"])
    check(o.lr > 0 and math.isfinite(o.lr), f"{key}.lr", f"must be a positive number, got {o.lr}")
    check(0 <= o.momentum < 1, f"{key}.momentum", f"must be in [0, 1), got {o.momentum}")
    check(0 <= o.weight_decay < math.inf, f"{key}.weight_decay", f"must be a number >= 0, got {o.weight_decay}")
    check(o.warmup >= 0, f"{key}.warmup", f"must be >= 0 iterations, got {o.warmup}")
    check(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), f"{key}.betas",
          f"must be two numbers in [0, 1), got {o.betas}")


def _validate_attack(a, key: str) -> None:
    check_choice(a.norm, f"{key}.norm", ["L2", "Linf"])
    check(a.eps > 0 and math.isfinite(a.eps), f"{key}.eps", f"must be a positive number, got {a.eps}")
    check(a.step_size > 0 and math.isfinite(a.step_size), f"{key}.step_size",
          f"must be a positive number, got {a.step_size}")
    check(a.steps >= 1, f"{key}.steps", f"must be at least 1, got {a.steps}")
    check(not a.fast or a.random_start, f"{key}.fast",
          f"needs a random start (one step from the clean image is FGSM training, prone to catastrophic overfitting); "
          f"drop {key}.random_start=false or set {key}.fast=false")


def _validate_jem(j) -> None:
    check(j.iterations >= 0, "jem.iterations", f"must be >= 0, got {j.iterations}")
    check(j.batch_size >= 2, "jem.batch_size", f"must be at least 2, got {j.batch_size}")
    _validate_optim(j.optim, "jem.optim")
    check(j.sgld_steps >= 1, "jem.sgld_steps", f"must be at least 1, got {j.sgld_steps}")
    check(j.sgld_step_size > 0 and math.isfinite(j.sgld_step_size), "jem.sgld_step_size",
          f"must be positive, got {j.sgld_step_size}")
    check(j.sgld_noise >= 0 and math.isfinite(j.sgld_noise), "jem.sgld_noise", f"must be >= 0, got {j.sgld_noise}")
    check(j.buffer_size >= j.batch_size, "jem.buffer_size",
          f"must hold at least one batch (jem.batch_size={j.batch_size}), got {j.buffer_size}")
    check(0 <= j.reinit_prob <= 1, "jem.reinit_prob", f"must be in [0, 1], got {j.reinit_prob}")
    check_choice(j.buffer_init, "jem.buffer_init", ["uniform", "gaussian"])
    check(j.px_weight >= 0, "jem.px_weight", f"must be >= 0, got {j.px_weight}")
    check_choice(j.batchnorm, "jem.batchnorm", ["frozen", "active"])
    check(j.loss_bound > 0, "jem.loss_bound", "must be positive")
    check(j.eval_sgld_steps is None or j.eval_sgld_steps >= 1, "jem.eval_sgld_steps", "must be >= 1 or null")


def _validate_chains(s2) -> None:
    """stage2's persistent contrastive chains (checked whichever stage2.contrastive is chosen, as jem's are)."""
    check_choice(s2.contrastive, "stage2.contrastive", ["fresh", "persistent"])
    check(s2.buffer_size >= s2.batch_size, "stage2.buffer_size",
          f"must hold at least one batch (stage2.batch_size={s2.batch_size}), got {s2.buffer_size}")
    check(0 <= s2.reinit_prob <= 1, "stage2.reinit_prob", f"must be in [0, 1], got {s2.reinit_prob}")
    check(s2.max_age >= 1, "stage2.max_age", f"must be at least 1 (PGD steps since a chain's seed), got {s2.max_age}")


def _validate_data(d) -> None:
    check(d.image_size is None or d.image_size >= 1, "data.image_size", f"must be >= 1 or null, got {d.image_size}")
    check(d.channels in (None, 1, 3), "data.channels", f"must be 1, 3 or null, got {d.channels}")
    check(d.num_classes is None or d.num_classes >= 2, "data.num_classes",
          f"must be >= 2 or null, got {d.num_classes}")
    for key, values in (("data.mean", d.mean), ("data.std", d.std)):
        if values is None:
            continue
        check(len(values) >= 1 and all(math.isfinite(v) for v in values), key,
              f"must be one number or one per channel, all finite, got {values}")
    check(d.std is None or all(v > 0 for v in d.std), "data.std", f"must be positive, got {d.std}")


def validate(cfg) -> None:
    """Raise DualatError naming the first bad key; called before any work starts."""
    check_choice(cfg.method, "method", list(METHODS))
    for fn in NAME_CHECKS:   # data/'s (dataset, seeds, augmentations) and models/' (model, options)
        fn(cfg)
    check(cfg.data.seeds != "folder" or bool(cfg.data.seed_folder), "data.seed_folder",
          "must name an image folder when data.seeds=folder")
    _validate_data(cfg.data)
    check(bool(re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.device)), "device",
          f"must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")
    check(isinstance(cfg.amp, bool) or cfg.amp == "auto", "amp",
          f"must be true, false or auto, got {cfg.amp!r}")
    check(cfg.threads >= 0, "threads", f"must be >= 0, got {cfg.threads}")
    check(0 <= cfg.seed < 2**32, "seed", f"must be an integer in [0, 2^32), got {cfg.seed}")
    check(bool(cfg.name) and cfg.name not in (".", "..") and not re.search(r"[/\\\x00]", cfg.name), "name",
          f"must be a plain name (it names the run directory), got {cfg.name!r}")
    s1, s2, ev = cfg.stage1, cfg.stage2, cfg.eval
    check(s1.iterations >= 0, "stage1.iterations", f"must be >= 0, got {s1.iterations}")
    check(s2.iterations >= 0, "stage2.iterations", f"must be >= 0, got {s2.iterations}")
    for key, b in (("stage1.batch_size", s1.batch_size), ("stage2.batch_size", s2.batch_size)):
        check(b >= 2, key, f"must be at least 2, got {b}")
    _validate_optim(s1.optim, "stage1.optim")
    _validate_optim(s2.optim, "stage2.optim")
    _validate_attack(s1.attack, "stage1.attack")
    _validate_attack(cfg.threat, "threat")
    check(s1.loss_bound > 0, "stage1.loss_bound", "must be positive")
    check(s2.step_size > 0 and math.isfinite(s2.step_size), "stage2.step_size",
          f"must be a positive number, got {s2.step_size}")
    check_choice(s2.objective, "stage2.objective", ["class_logit", "logsumexp"])
    check(0 < s2.auc_threshold < 1, "stage2.auc_threshold", f"must be in (0, 1), got {s2.auc_threshold}")
    check(s2.auc_window is None or s2.auc_window >= 1, "stage2.auc_window", "must be >= 1 or null")
    check(0 <= s2.t_init <= s2.t_max, "stage2.t_init", f"must be in [0, t_max={s2.t_max}], got {s2.t_init}")
    check(0 < s2.ema_decay < 1, "stage2.ema_decay", f"must be in (0, 1), got {s2.ema_decay}")
    check(s2.loss_bound > 0, "stage2.loss_bound", "must be positive")
    _validate_chains(s2)
    _validate_jem(cfg.jem)
    check(ev.every >= 1, "eval.every", f"must be >= 1, got {ev.every}")
    check(ev.n_test >= 1 and ev.n_samples >= 2, "eval.n_test", "and eval.n_samples must be >= 1 and >= 2")
    check(ev.pgd_steps >= 1, "eval.pgd_steps", "must be >= 1")
    check(ev.sample_steps is None or ev.sample_steps >= 0, "eval.sample_steps", "must be >= 0")
    check(ev.sample_step_size is None or 0 < ev.sample_step_size < math.inf, "eval.sample_step_size",
          "must be a positive number or null")
    check(ev.evalnet_iterations >= 1, "eval.evalnet_iterations", "must be >= 1")
    check(ev.step_sweep_samples >= 10, "eval.step_sweep_samples", f"must be >= 10, got {ev.step_sweep_samples}")
    check(cfg.log.every >= 1, "log.every", "must be >= 1")
    check(cfg.log.checkpoint_every >= 1, "log.checkpoint_every", "must be >= 1")
    check(cfg.distributed.timeout_min > 0, "distributed.timeout_min", "must be positive")
