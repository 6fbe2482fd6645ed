"""The JEM baseline (method.md 10): log p(y|x) by cross-entropy plus log p(x) by contrastive
divergence with SGLD samples from a persistent replay buffer. `method=jem` trains it from scratch
with the same models, data, logging, checkpoints and evaluation as DAT.

Divergence is an outcome, not a crash: when a loss or mean energy turns non-finite or passes
jem.loss_bound, the run records the iteration and values (diverged.json, the log, summary.json),
keeps the last good checkpoint (last.pt) and stops cleanly.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import safe_load
from ..data import BatchStream, make_seed_source
from ..data.transforms import make_transform
from ..errors import DualatError
from ..evaluate import clean_accuracy, pgd_accuracy
from ..metrics import frechet_distance, gaussian_stats
from ..models import freeze_batchnorm
from ..sgld import InitialDistribution, ReplayBuffer, sgld
from .common import Diverged, generator, isolated_rng, learning_rate, make_optimizer, maybe, seed_everything, set_lr, set_rng_state
from .dat import _plain
from .log import Averager, progress


def passes_per_iteration(j) -> int:
    """Forward/backward passes of one JEM iteration, in images: SGLD on one batch + the training
    pass over real and sampled images."""
    return (j.sgld_steps + 2) * j.batch_size


def initial_distribution(run_or_cfg, train_set, shape) -> InitialDistribution:
    cfg = getattr(run_or_cfg, "cfg", run_or_cfg)
    src = None
    if cfg.jem.buffer_init == "gaussian":
        src = make_seed_source("gaussian", tuple(shape), "train", train_set, None, cfg.seed)
    return InitialDistribution(cfg.jem.buffer_init, shape, train_set.num_classes, src)


def jem_step(model, opt, real, x_q, px_weight: float, loss_bound: float, iteration: int, autocast=None,
             fused: bool = True) -> dict:
    """One JEM update: CE on the real batch + px_weight * (E(real) - E(samples)).

    fused: one forward pass over [real, samples] (right when BatchNorm is frozen or absent);
    False keeps the two batches' BatchNorm statistics apart, as JEM's code does.
    Checks the losses before the optimiser step, so a diverging step never reaches the weights
    (raises Diverged naming `iteration`). Returns float metrics.
    """
    x, y = real
    b = x.shape[0]
    model.train()
    with maybe(autocast):
        if fused:
            logits = model(torch.cat([x, x_q])).float()
        else:
            logits = torch.cat([model(x), model(x_q)]).float()
    lse = torch.logsumexp(logits, dim=1)
    ce = F.cross_entropy(logits[:b], y)
    e_real, e_q = -lse[:b].mean(), -lse[b:].mean()
    gen = e_real - e_q  # minimised: lowers the energy of data, raises that of the samples
    loss = ce + px_weight * gen
    values = {"loss": loss.item(), "ce": ce.item(), "gen": gen.item(), "e_real": e_real.item(), "e_sample": e_q.item()}
    if not all(math.isfinite(v) and abs(v) <= loss_bound for v in values.values()):
        raise Diverged("jem", iteration, values)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    values["acc"] = (logits[:b].argmax(1) == y).float().mean().item()
    return values


def run_jem(run, state: dict | None = None) -> dict:
    """Train (or resume) JEM on `run`; returns the summary of the last evaluation (and the
    divergence, if one happened)."""
    cfg, model, j = run.cfg, run.model, run.cfg.jem
    if run.dist.enabled:
        raise DualatError("method=jem trains in one process (its replay buffer is not sharded); "
                          "launch it without torchrun")
    seed_everything(cfg.seed * 1000 + 30)
    if j.batchnorm == "frozen":
        freeze_batchnorm(model)
    opt = make_optimizer(model.parameters(), j.optim)
    shape = run.train_set.shape
    stream = BatchStream(run.train_set, j.batch_size, seed=cfg.seed * 1000 + 31,
                         transform=make_transform(cfg.data.augment, shape))
    gens = {"buffer": generator(cfg.seed * 1000 + 32), "sgld": generator(cfg.seed * 1000 + 33)}
    init = initial_distribution(run, run.train_set, shape)
    buffer = ReplayBuffer(j.buffer_size, init, j.reinit_prob, gens["buffer"])
    start, elapsed, cpu, saved_eval = 0, 0.0, 0.0, {}
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        stream.load_state_dict(state["streams"]["train"])
        buffer.load_state_dict(state["buffer"])
        for k, g in gens.items():
            g.set_state(state["generators"][k])
        start, elapsed, cpu = state["iteration"], state["elapsed"], state.get("cpu_s", 0.0)
        saved_eval = dict(state.get("last_eval", {}))
        set_rng_state(state["rng"])
    probe = None
    if start < j.iterations:
        with isolated_rng():  # building the probe (it may train the evaluation network) moves no training RNG
            probe = run.generation_probe()
    c0 = time.process_time()  # CPU seconds: a fairer cost than wall time on a shared machine
    avg, t0, last_eval, diverged = Averager(), time.time(), saved_eval, None
    per_it = passes_per_iteration(j)
    bar = progress(j.iterations, start, "JEM (SGLD)", run.show_progress)
    done = start
    try:
        for it in range(start, j.iterations):
            lr = learning_rate(j.optim, it, j.iterations)
            set_lr(opt, lr)
            x, y = next(stream)
            idx, x0 = buffer.draw(j.batch_size, gens["buffer"])
            x, y, x0 = run.to_device(x, y, x0)
            x_q = sgld(model, x0, j.sgld_steps, j.sgld_step_size, j.sgld_noise, gens["sgld"], j.clamp, run.autocast)
            buffer.put(idx, x_q.cpu())
            m = jem_step(model, opt, (x, y), x_q, j.px_weight, j.loss_bound, it + 1, run.autocast,
                         fused=j.batchnorm == "frozen")
            avg.add(m)
            bar.update(1)
            done = it + 1
            if done % cfg.log.every == 0 or done == j.iterations:
                rec = avg.pop()
                bar.set_postfix(ce=f"{rec['ce']:.3f}", gen=f"{rec['gen']:.3f}", acc=f"{rec['acc']:.2f}")
                run.log.write({"stage": "jem", "iteration": done, "lr": lr, "passes": done * per_it, **rec})
            if done % cfg.eval.every == 0 or done == j.iterations:
                last_eval = evaluate_jem(run, model, buffer, init, probe, done)
            if done % cfg.log.checkpoint_every == 0 or done == j.iterations:
                run.save_state({"stage": "jem", "iteration": done, "elapsed": elapsed + time.time() - t0,
                                "cpu_s": cpu + time.process_time() - c0,
                                "model": model.state_dict(), "optimizer": opt.state_dict(),
                                "buffer": buffer.state_dict(), "streams": {"train": stream.state_dict()},
                                "last_eval": _plain(last_eval),
                                "generators": {k: g.get_state() for k, g in gens.items()}})
    except Diverged as exc:
        diverged = {"iteration": exc.iteration, "values": {k: str(v) for k, v in exc.values.items()},
                    "last_good_checkpoint": "last.pt" if (run.dir / "last.pt").exists() else None}
        run.log.write({"event": "diverged", "stage": "jem", **diverged})
        (run.dir / "diverged.json").write_text(json.dumps(diverged, indent=1))
        run.say(f"JEM diverged at iteration {exc.iteration} ({', '.join(f'{k}={v}' for k, v in diverged['values'].items())}); "
                f"stopped cleanly, the last good checkpoint ({diverged['last_good_checkpoint'] or 'none yet'}) was kept")
    finally:
        bar.close()
    elapsed += time.time() - t0
    cpu += time.process_time() - c0
    if diverged is None and j.iterations > 0:
        run.write(model.state_dict(), "model.safetensors")
        run.write({"images": buffer.images}, "replay_buffer.safetensors")
    rate = buffer.restarts / max(buffer.draws, 1)
    completed = done if diverged is None else diverged["iteration"] - 1  # a diverged step is never applied
    return {**last_eval, "method": "jem", "iterations_done": completed, "passes": completed * per_it,
            "passes_per_iteration": per_it, "wall_s": round(elapsed, 1),
            "cpu_s": round(cpu, 1), "diverged": diverged,
            "buffer_restart_rate": round(rate, 4)}


def evaluate_jem(run, model, buffer: ReplayBuffer, init: InitialDistribution, probe, iteration: int) -> dict:
    """Periodic evaluation: clean / PGD accuracy, and the Frechet-distance proxy of (a) samples
    taken from the replay buffer and (b) fresh SGLD chains from the initial distribution."""
    cfg, j = run.cfg, run.cfg.jem
    a = cfg.stage2.attack
    ev = {"stage": "jem", "iteration": iteration, "event": "eval",
          "clean_acc": clean_accuracy(model, run.test_set, cfg.eval.n_test),
          "robust_acc": pgd_accuracy(model, run.test_set, cfg.eval.n_test, a.norm, a.eps, cfg.eval.pgd_steps),
          "attack": f"PGD-{cfg.eval.pgd_steps} {a.norm} eps={a.eps:g}"}
    if probe is not None:
        n = min(len(probe.labels), len(buffer))
        g = torch.Generator().manual_seed(cfg.seed + 99)
        from_buffer = buffer.images[torch.randperm(len(buffer), generator=g)[:n]]
        steps = j.eval_sgld_steps or j.sgld_steps
        fresh = sgld_batches(model, init.sample(n, g), steps, j.sgld_step_size, j.sgld_noise, g, j.clamp, run.autocast)
        for name, x in (("buffer", from_buffer), ("fresh", fresh)):
            feats, preds = probe.features_fn(x)
            own = _labels(model, x, run.device)
            ev[f"fd_{name}"] = frechet_distance(*gaussian_stats(feats), *probe.ref)
            ev[f"agreement_{name}"] = float(np.mean(np.asarray(preds) == own.numpy()))
            run.save_grid(x, own, f"{name}_{iteration:06d}.png")
        ev.update({"fd": ev["fd_buffer"], "fresh_steps": steps, "n_samples": n,
                   "fd_note": "fd = fd_buffer (replay-buffer samples); fd_fresh = new chains of fresh_steps SGLD steps"})
    run.log.write(ev)
    gen_text = f", FD buffer {ev['fd_buffer']:.2f} / fresh {ev['fd_fresh']:.2f}" if "fd_buffer" in ev else ""
    run.say(f"eval @ {iteration}: clean {ev['clean_acc']:.3f}, robust {ev['robust_acc']:.3f}{gen_text}")
    return ev


def _labels(model, x, device, batch_size: int = 500) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


def sgld_batches(model, x0: torch.Tensor, steps: int, step_size: float, noise: float, g, clamp: bool,
                 autocast=None, batch_size: int = 500) -> torch.Tensor:
    """Fresh SGLD chains for many starting points, in batches; CPU result."""
    device = next(model.parameters()).device
    out = [sgld(model, x0[i:i + batch_size].to(device), steps, step_size, noise, g, clamp, autocast).cpu()
           for i in range(0, len(x0), batch_size)]
    return torch.cat(out)


def load_buffer(run_dir) -> torch.Tensor:
    """The replay buffer of a JEM run directory: replay_buffer.safetensors (finished run) or the
    one inside last.pt (a run that diverged or was stopped)."""
    run_dir = Path(run_dir)
    if (run_dir / "replay_buffer.safetensors").is_file():
        return safe_load(run_dir / "replay_buffer.safetensors")["images"]
    if (run_dir / "last.pt").is_file():
        state = safe_load(run_dir / "last.pt")
        if isinstance(state.get("buffer"), dict):
            return state["buffer"]["images"]
    raise DualatError(f"{run_dir} holds no replay buffer (replay_buffer.safetensors or last.pt of a JEM run); "
                      "use --sampler sgld for fresh chains")


def sampler_chunks(sampler: str, model, cfg, run_dir, train_set, n: int, steps: int, step_size: float, seed: int,
                   seen: list, show_progress: bool = False, batch_size: int = 500):
    """(n actually drawn, iterator of (offset, labels, starts, samples) chunks) for JEM's samplers:
    'buffer' (random images of the final replay buffer; n capped at its size) or 'sgld' (fresh
    chains). Labels are the model's predictions; each chunk's labels are also appended to `seen`."""
    j = cfg.jem
    init = initial_distribution(cfg, train_set, tuple(train_set.shape))
    g = torch.Generator().manual_seed(seed)
    images = load_buffer(run_dir) if sampler == "buffer" else None
    if images is not None:
        n = min(n, len(images))
        images = images[torch.randperm(len(images), generator=g)[:n]]
    device = next(model.parameters()).device

    def chunks():
        bar = progress(n, 0, f"sampling ({sampler})", show_progress)
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            x0 = init.sample(m, g)
            if images is not None:
                x = images[start:start + m].float()
            else:
                x = sgld(model, x0.to(device), steps, step_size, j.sgld_noise, g, j.clamp).cpu()
            y = _labels(model, x, device)
            seen.append(y)
            bar.update(m)
            yield start, y, x0, x
        bar.close()
    return n, chunks()
