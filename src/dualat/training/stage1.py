"""Stage 1: ordinary adversarial training with BatchNorm active (or weights loaded from a file)."""
from __future__ import annotations

from ..checkpoint import extract_state_dict, load_weights, safe_load
from ..data import BatchStream
from ..data.transforms import make_transform
from ..distributed import sharded_accuracy
from ..evaluate import clean_accuracy, pgd_accuracy
from ..methods import method_of
from ..optim import make_optimizer
from ..rundir import RunDir
from ..seeding import STAGE1_PGD, STAGE1_STREAM, training_seed
from .common import Diverged, check_finite, generator
from .context import RunContext
from .loop import Stage, resume, run_loop
from .steps import StepRig, adversarial_step, plain_step


class Stage1(Stage):
    """Adversarial training (stage1.attack) or, for method=plain, clean cross-entropy."""

    stage = 1

    def __init__(self, run: RunContext):
        cfg, dist, s1 = run.cfg, run.dist, run.cfg.stage1
        super().__init__(run, s1.iterations, s1.optim, make_optimizer(run.model.parameters(), s1.optim))
        self.method = method_of(cfg)
        self.label = self.method.stage1_label
        self.stream = BatchStream(run.train_set, dist.per_rank(s1.batch_size), seed=training_seed(cfg.seed, STAGE1_STREAM),
                                  transform=make_transform(cfg.data.strong_augment, run.train_set.shape),
                                  rank=dist.rank, world_size=dist.world_size)
        self.pgd_gen = generator(dist.rank_seed(training_seed(cfg.seed, STAGE1_PGD)))
        self.trainer = None

    def load(self, state: dict) -> None:
        self.run.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.stream.load_state_dict(state["streams"]["train"])
        self.pgd_gen.set_state(state["generators"]["pgd"])

    def step(self, it: int) -> dict:
        run, s1 = self.run, self.run.cfg.stage1
        x, y = run.to_device(*next(self.stream))
        # averaged over the processes and checked before the optimiser step (the one divergence policy)
        rig = StepRig(run.autocast, self.trainer, guard=lambda m: check_finite(1, it + 1, run.dist.mean(m),
                                                                                  s1.loss_bound))
        if self.method.adversarial:
            return adversarial_step(run.model, self.opt, x, y, s1.attack, self.pgd_gen, rig)
        return plain_step(run.model, self.opt, x, y, rig)  # the plain baseline: same loop, clean cross-entropy

    def postfix(self, rec: dict) -> dict:
        return {"loss": f"{rec['loss']:.3f}", "acc": f"{rec.get('adv_acc', rec.get('acc', 0.0)):.2f}"}

    def state(self) -> dict:
        return {"model": self.run.model.state_dict(), "optimizer": self.opt.state_dict(),
                "streams": {"train": self.stream.state_dict()}, "generators": {"pgd": self.pgd_gen.get_state()}}


def run_stage1(run: RunContext, state: dict | None = None) -> dict:
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
    stage = Stage1(run)
    start, elapsed = resume(stage, state)
    stage.trainer = run.trainer()
    model.train()
    elapsed = run_loop(stage, start, elapsed)
    dist.broadcast_buffers(model)  # one set of BatchNorm statistics: rank 0's
    ev = {"clean_acc": sharded_accuracy(dist, clean_accuracy, model, run.test_set, cfg.eval.n_test)}
    a = cfg.threat
    ev["robust_acc"] = sharded_accuracy(dist, pgd_accuracy, model, run.test_set, cfg.eval.n_test, a.norm, a.eps,
                                        cfg.eval.pgd_steps)
    ev.update({"stage": 1, "iteration": s1.iterations, "event": "stage1_eval", "wall_s": round(elapsed, 1),
               "attack": run.attack_text(), "n_test": min(cfg.eval.n_test, len(run.test_set))})
    run.log.write(ev)
    run.write({"model": model.state_dict(), "stage": 1, "iteration": s1.iterations, "eval": ev}, RunDir.STAGE1)
    run.say(f"stage 1 done in {elapsed/60:.1f} min: clean {ev['clean_acc']:.3f}, {ev['attack']} {ev['robust_acc']:.3f}")
    return ev


__all__ = ["run_stage1", "Diverged"]
