"""Stage 1: ordinary adversarial training with BatchNorm active (or weights loaded from a file)."""
from __future__ import annotations

import time

from ..checkpoint import load_weights, safe_load, extract_state_dict
from ..data import BatchStream
from ..data.transforms import make_transform
from ..evaluate import clean_accuracy, pgd_accuracy
from .common import Diverged, check_finite, generator, learning_rate, set_rng_state, make_optimizer, set_lr
from ..distributed import sharded_accuracy
from .log import Averager, progress
from .steps import adversarial_step, plain_step


def run_stage1(run, state: dict | None = None) -> dict:
    """Train (or resume) stage 1 on `run`; returns its final evaluation. Writes stage1.pt.

    Under torchrun each process takes stage1.batch_size / world_size of every global batch."""
    cfg, model, dist = run.cfg, run.model, run.dist
    s1 = cfg.stage1
    if state is None and s1.init:
        report = load_weights(model, extract_state_dict(safe_load(s1.init)), strict=False)
        run.log.write({"event": "stage1_init", "path": s1.init, "loaded": report["loaded"],
                       "missing": report["missing"][:20], "unexpected": report["unexpected"][:20],
                       "renamed": report["renamed"]})
        renamed = ", ".join(f"{a!r} -> {b!r}" for a, b in report["renamed"].items())
        run.say(f"stage 1: loaded {report['loaded']} tensors from {s1.init} "
                f"({len(report['missing'])} missing, {len(report['unexpected'])} unexpected)"
                + (f"; renamed prefixes {renamed}" if renamed else ""))
    opt = make_optimizer(model.parameters(), s1.optim)
    stream = BatchStream(run.train_set, dist.per_rank(s1.batch_size), seed=cfg.seed * 1000 + 1,
                         transform=make_transform(cfg.data.strong_augment, run.train_set.shape),
                         rank=dist.rank, world_size=dist.world_size)
    pgd_gen = generator(dist.rank_seed(cfg.seed * 1000 + 2))
    start, elapsed = 0, 0.0
    if state is not None:
        state = run.own_state(state)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        stream.load_state_dict(state["streams"]["train"])
        pgd_gen.set_state(state["generators"]["pgd"])
        start, elapsed = state["iteration"], state["elapsed"]
        set_rng_state(state["rng"])
    avg, t0 = Averager(), time.time()
    label = "plain classifier" if cfg.method == "plain" else "stage 1 (AT)"
    bar = progress(s1.iterations, start, label, run.show_progress)
    trainer = run.trainer()
    model.train()
    for it in range(start, s1.iterations):
        lr = learning_rate(s1.optim, it, s1.iterations)
        set_lr(opt, lr)
        x, y = run.to_device(*next(stream))
        if cfg.method == "plain":  # the study's non-robust baseline: same loop, clean cross-entropy
            m = dist.mean(plain_step(model, opt, x, y, run.autocast, trainer))
        else:
            m = dist.mean(adversarial_step(model, opt, x, y, s1.attack, pgd_gen, run.autocast, trainer))
        check_finite(1, it + 1, m, cfg.stage2.loss_bound)
        avg.add(m)
        bar.update(1)
        done = it + 1
        if done % cfg.log.every == 0 or done == s1.iterations:
            rec = avg.pop()
            bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec.get('adv_acc', rec.get('acc', 0.0)):.2f}")
            run.log.write({"stage": 1, "iteration": done, "lr": lr, **rec})
        if done % cfg.log.checkpoint_every == 0 or done == s1.iterations:
            run.save_state({"stage": 1, "iteration": done, "elapsed": elapsed + time.time() - t0,
                            "model": model.state_dict(), "optimizer": opt.state_dict(),
                            "streams": {"train": stream.state_dict()}, "generators": {"pgd": pgd_gen.get_state()}})
    bar.close()
    elapsed += time.time() - t0
    dist.broadcast_buffers(model)  # one set of BatchNorm statistics: rank 0's
    ev = {"clean_acc": sharded_accuracy(dist, clean_accuracy, model, run.test_set, cfg.eval.n_test)}
    a = cfg.stage2.attack
    ev["robust_acc"] = sharded_accuracy(dist, pgd_accuracy, model, run.test_set, cfg.eval.n_test, a.norm, a.eps,
                                        cfg.eval.pgd_steps)
    ev.update({"stage": 1, "iteration": s1.iterations, "event": "stage1_eval", "wall_s": round(elapsed, 1),
               "attack": f"PGD-{cfg.eval.pgd_steps} {a.norm} eps={a.eps:g}", "n_test": min(cfg.eval.n_test, len(run.test_set))})
    run.log.write(ev)
    run.write({"model": model.state_dict(), "stage": 1, "iteration": s1.iterations, "eval": ev}, "stage1.pt")
    run.say(f"stage 1 done in {elapsed/60:.1f} min: clean {ev['clean_acc']:.3f}, {ev['attack']} {ev['robust_acc']:.3f}")
    return ev


__all__ = ["run_stage1", "Diverged"]
