"""Stage 2: Dual Adversarial Training from the stage-1 model, BatchNorm frozen (method.md 2-4)."""
from __future__ import annotations

import json
import math
import time

from ..atomic import atomic_write_text
from ..data import BatchStream
from ..data.transforms import make_transform
from ..distributed import sharded_accuracy
from ..evaluate import clean_accuracy, pgd_accuracy
from ..evaluate.stepchoice import choose_steps, format_choice
from ..models import freeze_batchnorm
from ..optim import make_optimizer
from ..rundir import RunDir
from ..sampler import default_step_size
from ..samplers import Draw
from ..seeding import DAT_ADV, DAT_CHAINS, DAT_GLOBAL, DAT_PGD, DAT_REAL, DAT_SEEDS, STEP_SWEEP_SEED, training_seed
from .chains import ChainStarts, ContrastiveChains, persistent_step
from .common import EMA, Curriculum, check_finite, generator, isolated_rng, seed_everything
from .context import RunContext
from .loop import Stage, resume, run_loop, scalars
from .steps import StepRig, attack_steps, dat_step


class DAT(Stage):
    """DAT's step and state: EMA, the step curriculum, real / adversarial streams, seed draws, and
    with stage2.contrastive=persistent the buffer of contrastive chains (chains.py)."""

    stage, label, evaluates = 2, "stage 2 (DAT)", True
    best = {"fd": (RunDir.BEST_FD, "min"), "robust_acc": (RunDir.BEST_ROBUST, "max")}

    def __init__(self, run: RunContext):
        cfg, model, dist, s2 = run.cfg, run.model, run.dist, run.cfg.stage2
        seed_everything(training_seed(cfg.seed, DAT_GLOBAL))
        if s2.freeze_bn:
            freeze_batchnorm(model)
        model.train()
        super().__init__(run, s2.iterations, s2.optim, make_optimizer(model.parameters(), s2.optim))
        self.ema = EMA(model, s2.ema_decay)
        self.cur = Curriculum(s2.t_init, s2.t_max, s2.auc_threshold, s2.auc_window or math.ceil(1000 / s2.batch_size))
        shape, self.b = run.train_set.shape, dist.per_rank(s2.batch_size)
        self.real = BatchStream(run.train_set, self.b, seed=training_seed(cfg.seed, DAT_REAL),
                                transform=make_transform(cfg.data.augment, shape), rank=dist.rank,
                                world_size=dist.world_size)
        self.adv = BatchStream(run.train_set, self.b, seed=training_seed(cfg.seed, DAT_ADV),
                               transform=make_transform(cfg.data.strong_augment, shape), rank=dist.rank,
                               world_size=dist.world_size)
        self.seed_tf = make_transform(cfg.data.augment, shape)
        self.gens = {"seeds": generator(dist.rank_seed(training_seed(cfg.seed, DAT_SEEDS))),
                     "pgd": generator(dist.rank_seed(training_seed(cfg.seed, DAT_PGD)))}
        self.probe, self.trainer, self.gather = None, None, None
        self.chains = None  # fresh contrastive samples every iteration (the paper's)
        if s2.contrastive == "persistent":  # filled from the seed generator; chosen by a generator of their own
            self.chains = ContrastiveChains(s2.buffer_size, ChainStarts(self.seeds, run.train_set.num_classes),
                                            s2.reinit_prob, s2.max_age, self.gens["seeds"])
            self.gens["chains"] = generator(training_seed(cfg.seed, DAT_CHAINS))
        # forward/backward passes of B images per iteration beside the T contrastive ones: K attack
        # steps and the fused training pass over the real, contrastive and adversarial batches
        self.other_passes = attack_steps(cfg.threat)[0] + 3

    def seeds(self, n: int, y, g):
        """n training seeds for labels y (augmented as the real batch is), drawn from generator g."""
        seeds = self.run.seeds_train.sample(n, y, g)
        return self.seed_tf(seeds, g) if self.seed_tf is not None else seeds

    def load(self, state: dict) -> None:
        self.run.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.cur.load_state_dict(state["curriculum"])
        self.real.load_state_dict(state["streams"]["real"])
        self.adv.load_state_dict(state["streams"]["adv"])
        for k, g in self.gens.items():
            if k in state["generators"]:  # a run switched to persistent chains on resume has none yet
                g.set_state(state["generators"][k])
        if self.chains is not None and "chains" in state:
            self.chains.load_state_dict(state["chains"])

    def step(self, it: int) -> dict:
        run, s2 = self.run, self.run.cfg.stage2
        x_r, y_r = next(self.real)
        x_a, y_a = next(self.adv)
        T = self.cur.T
        # averaged over the processes and checked before the optimiser step (the one divergence policy)
        rig = StepRig(run.autocast, self.trainer, self.gather,
                      guard=lambda m: check_finite(2, it + 1, run.dist.mean(m), s2.loss_bound))
        if self.chains is None:
            seeds = self.seeds(self.b, y_r, self.gens["seeds"])
            x_r, y_r, x_a, y_a, seeds = run.to_device(x_r, y_r, x_a, y_a, seeds)
            m = dat_step(run.model, self.opt, (x_r, y_r), seeds, (x_a, y_a), T, s2, self.gens["pgd"], rig,
                         threat=run.cfg.threat)
        else:
            m = persistent_step(run, self.opt, self.chains, (x_r, y_r), (x_a, y_a), T, self.gens, rig)
        self.ema.update(run.model)
        self.cur.update(m["auc"])
        # the iteration's cost in passes of B images: T contrastive (input-gradient) passes, either kind of chain
        return {**m, "T": T, "contrastive_passes": T, "batch_passes": T + self.other_passes}

    def postfix(self, rec: dict) -> dict:
        return {"bce": f"{rec['bce']:.3f}", "ce": f"{rec['ce']:.3f}", "auc": f"{rec['auc']:.2f}", "T": self.cur.T,
                "adv_acc": f"{rec['adv_acc']:.2f}"}

    def log_fields(self, done: int) -> dict:
        return {"T_next": self.cur.T}

    def eval_model(self):
        return self.ema.model

    def evaluate(self, done: int) -> dict:
        return evaluate_stage2(self.run, self.ema.model, self.probe, self.cur.T, done)

    def state(self) -> dict:
        return {"model": self.run.model.state_dict(), "ema": self.ema.state_dict(), "optimizer": self.opt.state_dict(),
                "curriculum": self.cur.state_dict(), "best": dict(self.best_values), "last_eval": scalars(self.last_eval),
                "streams": {"real": self.real.state_dict(), "adv": self.adv.state_dict()},
                "generators": {k: g.get_state() for k, g in self.gens.items()},
                **({"chains": self.chains.state_dict()} if self.chains is not None else {})}


def run_stage2(run: RunContext, state: dict | None = None) -> dict:
    """Train (or resume) DAT on `run`; returns the last periodic evaluation.

    Under torchrun each process takes stage2.batch_size / world_size of the real, adversarial
    and seed batches, with its own seed-image and PGD generators; the AUC is computed over every
    process's scores, so all take the same curriculum decisions."""
    dat = DAT(run)
    start, elapsed = resume(dat, state)
    if start < dat.iterations:
        with isolated_rng():  # building the probe (it may train the evaluation network) moves no training RNG
            dat.probe = run.generation_probe()
    dat.trainer, dat.gather = run.trainer(), run.dist.gather if run.dist.enabled else None
    elapsed = run_loop(dat, start, elapsed)
    if dat.iterations > 0:
        run.write(dat.ema.model.state_dict(), RunDir.EMA_WEIGHTS)
    chosen = {}
    if dat.iterations > 0 and run.cfg.eval.step_sweep and len(run.train_set.shape) == 3:
        with isolated_rng():
            chosen = {"sample_steps": record_sample_steps(run, dat)}
    best = dat.best_values
    chains = {}
    if dat.chains is not None:  # what the persistent chains ended as (their restarts include max_age's)
        chains = {"buffer_age": round(dat.chains.mean_age(), 2),
                  "chain_restart_rate": round(dat.chains.restarts / max(dat.chains.draws, 1), 4)}
    return {**dat.last_eval, "T_final": dat.cur.T, **chosen, **chains, "wall_s": round(elapsed, 1),
            "best_fd": best["fd"] if math.isfinite(best["fd"]) else None,
            "best_robust_acc": best["robust_acc"]}


def record_sample_steps(run: RunContext, dat: DAT) -> int:
    """Choose the sampler's steps around the final T (evaluate/stepchoice.py) with the EMA model,
    write RUN/sample_steps.json (sample, eval and study use it by default), log and say it."""
    features_fn = dat.probe.features_fn if dat.probe is not None else run.evalnet_features()
    cfg = run.cfg
    draw = Draw(dat.ema.model, cfg.eval.step_sweep_samples, step_size=default_step_size(cfg),
                seed=cfg.seed + STEP_SWEEP_SEED, seeds=run.seeds_test, autocast=run.autocast)
    choice = choose_steps(draw, features_fn, run.train_set, dat.cur.T)
    if run.dist.is_main:
        atomic_write_text(run.dir / RunDir.SAMPLE_STEPS, json.dumps(choice, indent=1))
    run.log.write({"event": "sample_steps", **{k: v for k, v in choice.items() if k != "protocol"}})
    run.say(format_choice(choice))
    return choice["sample_steps"]


def evaluate_stage2(run: RunContext, ema_model, probe, T: int, iteration: int) -> dict:
    """Periodic evaluation on the EMA model: clean and PGD accuracy, Frechet distance of samples.

    Under torchrun each process takes a share of the test images and of the samples; the
    counts and features are gathered, so every process returns the same numbers."""
    cfg, dist = run.cfg, run.dist
    wall0, cpu0 = time.time(), time.process_time()
    a = cfg.threat
    steps = cfg.eval.sample_steps if cfg.eval.sample_steps is not None else max(T, 1)
    step_size = cfg.eval.sample_step_size or default_step_size(cfg)
    ev = {"stage": 2, "iteration": iteration, "event": "eval",
          "clean_acc": sharded_accuracy(dist, clean_accuracy, ema_model, run.test_set, cfg.eval.n_test),
          "robust_acc": sharded_accuracy(dist, pgd_accuracy, ema_model, run.test_set, cfg.eval.n_test, a.norm, a.eps,
                                         cfg.eval.pgd_steps),
          "attack": run.attack_text(), "T": T}
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
