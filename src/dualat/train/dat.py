"""Stage 2: Dual Adversarial Training from the stage-1 model, BatchNorm frozen (method.md 2-4)."""
from __future__ import annotations

import math
import time

from ..data import BatchStream
from ..data.transforms import make_transform
from ..evaluate import clean_accuracy, pgd_accuracy
from ..models import freeze_batchnorm
from .common import (EMA, Curriculum, Diverged, check_finite, generator, isolated_rng, learning_rate, make_optimizer,
                     parameters_finite, seed_everything, set_lr, set_rng_state)
from ..distributed import sharded_accuracy
from .log import Averager, progress
from .steps import dat_step


def run_stage2(run, state: dict | None = None) -> dict:
    """Train (or resume) DAT on `run`; returns the last periodic evaluation.

    Under torchrun each process takes stage2.batch_size / world_size of the real, adversarial
    and seed batches, with its own seed-image and PGD generators; the AUC is computed over every
    process's scores, so all take the same curriculum decisions."""
    cfg, model, dist = run.cfg, run.model, run.dist
    s2 = cfg.stage2
    seed_everything(cfg.seed * 1000 + 10)
    if s2.freeze_bn:
        freeze_batchnorm(model)
    model.train()
    opt = make_optimizer(model.parameters(), s2.optim)
    ema = EMA(model, s2.ema_decay)
    cur = Curriculum(s2.t_init, s2.t_max, s2.auc_threshold, s2.auc_window or math.ceil(1000 / s2.batch_size))
    shape, b = run.train_set.shape, dist.per_rank(s2.batch_size)
    real = BatchStream(run.train_set, b, seed=cfg.seed * 1000 + 11, transform=make_transform(cfg.data.augment, shape),
                       rank=dist.rank, world_size=dist.world_size)
    adv = BatchStream(run.train_set, b, seed=cfg.seed * 1000 + 12,
                      transform=make_transform(cfg.data.strong_augment, shape), rank=dist.rank,
                      world_size=dist.world_size)
    seed_tf = make_transform(cfg.data.augment, shape)
    gens = {"seeds": generator(dist.rank_seed(cfg.seed * 1000 + 13)),
            "pgd": generator(dist.rank_seed(cfg.seed * 1000 + 14))}
    best = {"fd": math.inf, "robust_acc": -1.0}
    start, elapsed, last_eval = 0, 0.0, {}
    if state is not None:
        state = run.own_state(state)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        cur.load_state_dict(state["curriculum"])
        real.load_state_dict(state["streams"]["real"])
        adv.load_state_dict(state["streams"]["adv"])
        for k, g in gens.items():
            g.set_state(state["generators"][k])
        best = {k: float(v) for k, v in state["best"].items()}
        start, elapsed = state["iteration"], state["elapsed"]
        last_eval = dict(state.get("last_eval", {}))
        set_rng_state(state["rng"])
    probe = None
    if start < s2.iterations:
        with isolated_rng():  # building the probe (it may train the evaluation network) moves no training RNG
            probe = run.generation_probe()
    avg, t0 = Averager(), time.time()
    trainer, gather = run.trainer(), dist.gather if dist.enabled else None
    bar = progress(s2.iterations, start, "stage 2 (DAT)", run.show_progress)
    for it in range(start, s2.iterations):
        lr = learning_rate(s2.optim, it, s2.iterations)
        set_lr(opt, lr)
        x_r, y_r = next(real)
        x_a, y_a = next(adv)
        seeds = run.seeds_train.sample(b, y_r, gens["seeds"])
        if seed_tf is not None:
            seeds = seed_tf(seeds, gens["seeds"])
        x_r, y_r, x_a, y_a, seeds = run.to_device(x_r, y_r, x_a, y_a, seeds)
        T = cur.T
        m = dist.mean(dat_step(model, opt, (x_r, y_r), seeds, (x_a, y_a), T, s2, gens["pgd"], run.autocast,
                               trainer, gather))
        check_finite(2, it + 1, m, s2.loss_bound)
        ema.update(model)
        cur.update(m["auc"])
        avg.add({**m, "T": T})
        bar.update(1)
        done = it + 1
        if done % cfg.log.every == 0 or done == s2.iterations:
            rec = avg.pop()
            bar.set_postfix(bce=f"{rec['bce']:.3f}", ce=f"{rec['ce']:.3f}", auc=f"{rec['auc']:.2f}", T=cur.T,
                            adv_acc=f"{rec['adv_acc']:.2f}")
            run.log.write({"stage": 2, "iteration": done, "lr": lr, "T_next": cur.T, **rec})
        if done % cfg.eval.every == 0 or done == s2.iterations:
            if not (parameters_finite(model) and parameters_finite(ema.model)):  # before any best_* is written
                raise Diverged(2, done, {"parameters": float("nan")})
            with isolated_rng():
                last_eval = evaluate_stage2(run, ema.model, probe, cur.T, done)
            if last_eval.get("fd", math.inf) < best["fd"]:
                best["fd"] = last_eval["fd"]
                _save_weights(run, "best_fid.pt", ema, done, last_eval)
            if last_eval["robust_acc"] > best["robust_acc"]:
                best["robust_acc"] = last_eval["robust_acc"]
                _save_weights(run, "best_robust.pt", ema, done, last_eval)
        if done % cfg.log.checkpoint_every == 0 or done == s2.iterations:
            run.save_state({"stage": 2, "iteration": done, "elapsed": elapsed + time.time() - t0,
                            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                            "curriculum": cur.state_dict(), "best": best, "last_eval": _plain(last_eval),
                            "streams": {"real": real.state_dict(), "adv": adv.state_dict()},
                            "generators": {k: g.get_state() for k, g in gens.items()}})
    bar.close()
    elapsed += time.time() - t0
    if s2.iterations > 0:
        run.write(ema.model.state_dict(), "model_ema.safetensors")
    return {**last_eval, "T_final": cur.T, "wall_s": round(elapsed, 1),
            "best_fd": best["fd"] if math.isfinite(best["fd"]) else None,
            "best_robust_acc": best["robust_acc"]}


def evaluate_stage2(run, ema_model, probe, T: int, iteration: int) -> dict:
    """Periodic evaluation on the EMA model: clean and PGD accuracy, Frechet distance of samples.

    Under torchrun each process takes a share of the test images and of the samples; the
    counts and features are gathered, so every process returns the same numbers."""
    cfg, dist = run.cfg, run.dist
    wall0, cpu0 = time.time(), time.process_time()
    a = cfg.stage2.attack
    steps = cfg.eval.sample_steps if cfg.eval.sample_steps is not None else max(T, 1)
    step_size = cfg.eval.sample_step_size or 2 * cfg.stage2.step_size
    ev = {"stage": 2, "iteration": iteration, "event": "eval",
          "clean_acc": sharded_accuracy(dist, clean_accuracy, ema_model, run.test_set, cfg.eval.n_test),
          "robust_acc": sharded_accuracy(dist, pgd_accuracy, ema_model, run.test_set, cfg.eval.n_test, a.norm, a.eps,
                                         cfg.eval.pgd_steps),
          "attack": f"PGD-{cfg.eval.pgd_steps} {a.norm} eps={a.eps:g}", "T": T}
    if probe is not None:  # image data: Frechet distance in the evaluation network's features
        gen = probe(ema_model, steps, step_size, autocast=run.autocast, dist=dist if dist.enabled else None)
        ev.update({"fd": gen["fd"], "class_agreement": gen["class_agreement"], "sample_steps": steps,
                   "sample_step_size": step_size, "n_samples": len(probe.labels)})
        run.save_grid(gen["samples"], gen["labels"], f"samples_{iteration:06d}.png")
    # the log also gets what the evaluation cost and the process's CPU time so far (time to quality:
    # benchmarks/time_to_quality.py); the returned numbers, kept in checkpoints, stay as they were
    cpu = time.process_time()
    run.log.write({**ev, "eval_wall_s": round(time.time() - wall0, 3), "eval_cpu_s": round(cpu - cpu0, 3),
                   "cpu_s": round(cpu, 3)})
    gen_text = f", FD {ev['fd']:.2f}, agreement {ev['class_agreement']:.2f}" if "fd" in ev else ""
    run.say(f"eval @ {iteration}: clean {ev['clean_acc']:.3f}, robust {ev['robust_acc']:.3f}{gen_text}, T {T}")
    return ev


def _plain(ev: dict) -> dict:
    """The numbers and names of an evaluation (what a weights-only checkpoint can hold)."""
    return {k: v for k, v in ev.items() if isinstance(v, (int, float, str))}


def _save_weights(run, name: str, ema, iteration: int, ev: dict) -> None:
    run.write({"model": ema.model.state_dict(), "stage": 2, "iteration": iteration, "eval": _plain(ev)}, name)
