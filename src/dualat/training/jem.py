"""The JEM baseline (method.md 10): log p(y|x) by cross-entropy plus log p(x) by contrastive
divergence with SGLD samples from a persistent replay buffer. `method=jem` trains it from scratch
with the same models, data, logging, checkpoints and evaluation as DAT.

A divergence (a loss or mean energy non-finite or past jem.loss_bound) follows the one policy of
training/loop.py, as for DAT; the summary it leaves still counts the iterations, passes and time spent.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from ..data import BatchStream
from ..data.transforms import make_transform
from ..energy import energy
from ..errors import DualatError
from ..evaluate import clean_accuracy, pgd_accuracy
from ..metrics import frechet_distance, gaussian_stats
from ..models import freeze_batchnorm
from ..optim import make_optimizer
from ..rundir import RunDir
from ..seeding import JEM_BUFFER, JEM_GLOBAL, JEM_SGLD, JEM_STREAM, SAMPLE_SEED, training_seed
from ..sgld import InitialDistribution, ReplayBuffer, initial_distribution, predictions, sgld, sgld_batches
from .common import Diverged, check_finite, generator, isolated_rng, maybe, seed_everything
from .context import RunContext
from .loop import Stage, resume, run_loop, scalars
from .steps import StepRig


def passes_per_iteration(j) -> int:
    """Forward/backward passes of one JEM iteration, in images: SGLD on one batch + the training
    pass over real and sampled images."""
    return (j.sgld_steps + 2) * j.batch_size


def jem_step(model, opt, real, x_q, px_weight: float, rig: StepRig | None = None, fused: bool = True) -> dict:
    """One JEM update: CE on the real batch + px_weight * (E(real) - E(samples)).

    fused: one forward pass over [real, samples] (right when BatchNorm is frozen or absent);
    False keeps the two batches' BatchNorm statistics apart, as JEM's code does.
    The losses reach the host in one copy and pass rig.guard before the optimiser step, so a
    diverging step never reaches the weights. Returns float metrics.
    """
    rig = rig or StepRig()
    x, y = real
    b = x.shape[0]
    model.train()
    with maybe(rig.autocast):
        if fused:
            logits = model(torch.cat([x, x_q])).float()
        else:
            logits = torch.cat([model(x), model(x_q)]).float()
    lse = -energy(logits)
    ce = F.cross_entropy(logits[:b], y)
    e_real, e_q = -lse[:b].mean(), -lse[b:].mean()
    gen = e_real - e_q  # minimised: lowers the energy of data, raises that of the samples
    loss = ce + px_weight * gen
    with torch.no_grad():  # one device-to-host copy for every number
        acc = (logits[:b].argmax(1) == y).float().mean()
        host = torch.stack([loss.detach(), ce.detach(), gen.detach(), e_real.detach(), e_q.detach(), acc]).tolist()
    values = rig.check(dict(zip(("loss", "ce", "gen", "e_real", "e_sample"), host[:5])))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {**values, "acc": host[5]}


class JEM(Stage):
    """JEM's step and state: the replay buffer, its SGLD chains and the data stream."""

    stage, label, evaluates = "jem", "JEM (SGLD)", True

    def __init__(self, run: RunContext):
        cfg, model, j = run.cfg, run.model, run.cfg.jem
        seed_everything(training_seed(cfg.seed, JEM_GLOBAL))
        if j.batchnorm == "frozen":
            freeze_batchnorm(model)
        super().__init__(run, j.iterations, j.optim, make_optimizer(model.parameters(), j.optim))
        shape = run.train_set.shape
        self.stream = BatchStream(run.train_set, j.batch_size, seed=training_seed(cfg.seed, JEM_STREAM),
                                  transform=make_transform(cfg.data.augment, shape))
        self.gens = {"buffer": generator(training_seed(cfg.seed, JEM_BUFFER)), "sgld": generator(training_seed(cfg.seed, JEM_SGLD))}
        self.init = initial_distribution(cfg, run.train_set, shape)
        self.buffer = ReplayBuffer(j.buffer_size, self.init, j.reinit_prob, self.gens["buffer"])
        self.cpu, self.c0, self.probe = 0.0, time.process_time(), None
        self.per_it = passes_per_iteration(j)

    def load(self, state: dict) -> None:
        self.run.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.stream.load_state_dict(state["streams"]["train"])
        self.buffer.load_state_dict(state["buffer"])
        for k, g in self.gens.items():
            g.set_state(state["generators"][k])
        self.cpu = state.get("cpu_s", 0.0)

    def step(self, it: int) -> dict:
        run, j = self.run, self.run.cfg.jem
        x, y = next(self.stream)
        idx, x0 = self.buffer.draw(j.batch_size, self.gens["buffer"])
        x, y, x0 = run.to_device(x, y, x0)
        x_q = sgld(run.model, x0, j.sgld_steps, j.sgld_step_size, j.sgld_noise, self.gens["sgld"], j.clamp,
                   run.autocast)
        self.buffer.put(idx, x_q.cpu())
        guard = lambda m: check_finite("jem", it + 1, m, j.loss_bound, every=True)  # noqa: E731
        return jem_step(run.model, self.opt, (x, y), x_q, j.px_weight, StepRig(run.autocast, guard=guard),
                        fused=j.batchnorm == "frozen")

    def postfix(self, rec: dict) -> dict:
        return {"ce": f"{rec['ce']:.3f}", "gen": f"{rec['gen']:.3f}", "acc": f"{rec['acc']:.2f}"}

    def log_fields(self, done: int) -> dict:
        return {"passes": done * self.per_it}

    def evaluate(self, done: int) -> dict:
        return evaluate_jem(self.run, self.run.model, self.buffer, self.init, self.probe, done)

    def cpu_s(self) -> float:
        return self.cpu + time.process_time() - self.c0

    def state(self) -> dict:
        return {"cpu_s": self.cpu_s(), "model": self.run.model.state_dict(), "optimizer": self.opt.state_dict(),
                "buffer": self.buffer.state_dict(), "streams": {"train": self.stream.state_dict()},
                "last_eval": scalars(self.last_eval), "generators": {k: g.get_state() for k, g in self.gens.items()}}


def run_jem(run: RunContext, state: dict | None = None) -> dict:
    """Train (or resume) JEM on `run`; returns its summary. A divergence raises Diverged carrying
    the summary of the work done (training/loop.py states the policy)."""
    if run.dist.enabled:
        raise DualatError("method=jem trains in one process (its replay buffer is not sharded); "
                          "launch it without torchrun")
    jem = JEM(run)
    start, elapsed = resume(jem, state)
    if start < jem.iterations:
        with isolated_rng():  # building the probe (it may train the evaluation network) moves no training RNG
            jem.probe = run.generation_probe()
    jem.c0 = time.process_time()  # CPU seconds: a fairer cost than wall time on a shared machine
    t0 = time.time()
    try:
        elapsed = run_loop(jem, start, elapsed)
    except Diverged as exc:  # a diverged step is never applied: iterations before it are done
        exc.summary = _summary(jem, elapsed + time.time() - t0, exc.iteration - 1)
        raise
    if jem.iterations > 0:
        run.write(run.model.state_dict(), RunDir.WEIGHTS)
        run.write({"images": jem.buffer.images}, RunDir.BUFFER)
    return _summary(jem, elapsed, max(start, jem.iterations))


def _summary(jem: JEM, elapsed: float, completed: int) -> dict:
    """What a JEM run did: its last evaluation, iterations, passes, time, the buffer's restart rate
    (`diverged` is filled in by the divergence record)."""
    buffer = jem.buffer
    return {**jem.last_eval, "method": "jem", "iterations_done": completed, "passes": completed * jem.per_it,
            "passes_per_iteration": jem.per_it, "wall_s": round(elapsed, 1),
            "cpu_s": round(jem.cpu_s(), 1), "diverged": None,
            "buffer_restart_rate": round(buffer.restarts / max(buffer.draws, 1), 4)}


def evaluate_jem(run: RunContext, model, buffer: ReplayBuffer, init: InitialDistribution, probe,
                 iteration: int) -> dict:
    """Periodic evaluation: clean / PGD accuracy, and the Frechet-distance proxy of (a) samples
    taken from the replay buffer and (b) fresh SGLD chains from the initial distribution."""
    cfg, j = run.cfg, run.cfg.jem
    a = cfg.threat
    ev = {"stage": "jem", "iteration": iteration, "event": "eval",
          "clean_acc": clean_accuracy(model, run.test_set, cfg.eval.n_test),
          "robust_acc": pgd_accuracy(model, run.test_set, cfg.eval.n_test, a.norm, a.eps, cfg.eval.pgd_steps),
          "attack": run.attack_text()}
    if probe is not None:
        n = min(len(probe.labels), len(buffer))
        g = torch.Generator().manual_seed(cfg.seed + SAMPLE_SEED)
        from_buffer = buffer.images[torch.randperm(len(buffer), generator=g)[:n]]
        steps = j.eval_sgld_steps or j.sgld_steps
        fresh = sgld_batches(model, init.sample(n, g), steps, j.sgld_step_size, j.sgld_noise, g, j.clamp, run.autocast)
        for name, x in (("buffer", from_buffer), ("fresh", fresh)):
            feats, preds = probe.features_fn(x)
            own = predictions(model, x, run.device)
            ev[f"fd_{name}"] = frechet_distance(*gaussian_stats(feats), *probe.ref)
            ev[f"agreement_{name}"] = float(np.mean(np.asarray(preds) == own.numpy()))
            run.save_grid(x, own, f"{name}_{iteration:06d}.png")
        ev.update({"fd": ev["fd_buffer"], "fresh_steps": steps, "n_samples": n,
                   "fd_note": "fd = fd_buffer (replay-buffer samples); fd_fresh = new chains of fresh_steps SGLD steps"})
    run.log.write(ev)
    gen_text = f", FD buffer {ev['fd_buffer']:.2f} / fresh {ev['fd_fresh']:.2f}" if "fd_buffer" in ev else ""
    run.say(f"eval @ {iteration}: clean {ev['clean_acc']:.3f}, robust {ev['robust_acc']:.3f}{gen_text}")
    return ev
