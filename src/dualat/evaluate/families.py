"""The robust, OOD and calibration families of `evaluate()`: each takes the Target and its option
object and returns its numbers with their protocol text (the `*_protocol` entries)."""
from __future__ import annotations

import contextlib
import dataclasses

from ..distributed import sharded_accuracy
from ..precision import FLOAT32
from ..seeding import OOD_SEED
from .autoattack import autoattack_accuracy
from .calibration import calibration
from .ood import ood_auroc, ood_sets
from .options import CalibrationOptions, OODOptions, RobustOptions, Target
from .robust import clean_accuracy, default_eps, parse_eps, pgd_accuracy


def budgets(cfg, o: RobustOptions) -> dict[str, float]:
    """{'L2': eps, 'Linf': eps}: the run's threat model and the defaults, overridden by the options."""
    eps_by = default_eps(cfg)
    if o.eps is not None:
        eps_by[o.norm or cfg.threat.norm] = parse_eps(o.eps)
    if o.eps_l2 is not None:
        eps_by["L2"] = parse_eps(o.eps_l2)
    if o.eps_linf is not None:
        eps_by["Linf"] = parse_eps(o.eps_linf)
    return eps_by


def _autocast(t: Target):
    """The run's arithmetic for the model's forwards (float32: no autocast)."""
    return t.autocast() if t.autocast else contextlib.nullcontext()


def robust_family(t: Target, o: RobustOptions, n: int | None) -> dict:
    """Clean accuracy, PGD accuracy per norm (robust_acc = the run's own norm), AutoAttack.

    Float32 unless the caller chose the arithmetic (`amp=` / `--amp`): a run trained in bf16
    (amp: auto on a CPU with native bf16) is still measured in float32, like AutoAttack always is."""
    model, test_set, n_test, dist, show = t.model, t.test_set, t.n_test, t.dist, t.show_progress
    if not t.robust_in_dtype:
        t = dataclasses.replace(t, dtype=FLOAT32, autocast=None)
    eps_by = budgets(t.cfg, o)
    norms = [o.norm] if o.norm else ["L2", "Linf"]
    with _autocast(t):
        res = {"clean_acc": sharded_accuracy(dist, clean_accuracy, model, test_set, n_test, show_progress=show),
               "clean_protocol": f"first {n_test} of {len(test_set)} test images, {t.weights}, eval mode"}
    t.dtypes["clean_acc"] = t.dtype
    for nm in norms:
        res[f"eps_{nm}"] = eps_by[nm]
        with _autocast(t):
            res[f"pgd_{nm}_acc"] = sharded_accuracy(dist, pgd_accuracy, model, test_set, n_test, nm, eps_by[nm],
                                                    o.pgd_steps, o.pgd_step_size, o.restarts, show_progress=show)
        t.dtypes[f"pgd_{nm}_acc"] = t.dtypes["robust_acc"] = t.dtype
    run_norm = t.cfg.threat.norm if t.cfg.threat.norm in norms else norms[0]
    res["robust_acc"] = res[f"pgd_{run_norm}_acc"]
    step = f"{o.pgd_step_size:g}" if o.pgd_step_size else "2.5*eps/steps"
    res["robust_protocol"] = (
        f"untargeted PGD-{o.pgd_steps} on cross-entropy (dualat.pgd), step {step}, {o.restarts} restart(s)"
        f"{' with random start' if o.restarts > 1 else ', no random start'}; "
        + "; ".join(f"{nm} eps={eps_by[nm]:.6g}" for nm in norms)
        + f"; first {n_test} test images; robust_acc = the run's own norm ({run_norm}); {t.weights}")
    if o.autoattack:
        n_aa = min(o.n_autoattack, len(test_set)) if o.n_autoattack else (
            n_test if n is not None else min(1000, len(test_set)))
        protocols = []
        for nm in norms:
            aa = autoattack_accuracy(model, test_set, n_aa, nm, eps_by[nm], o.aa_version, o.aa_attacks, o.aa_n_iter,
                                     show_progress=show, dist=dist)
            res[f"autoattack_{nm}_acc"] = aa["robust_acc"]
            res[f"autoattack_{nm}_max_perturbation"] = aa["max_perturbation"]
            res["autoattack_clean_acc"] = aa["clean_acc"]
            t.dtypes[f"autoattack_{nm}_acc"] = t.dtypes["autoattack_clean_acc"] = FLOAT32  # always
            protocols.append(aa["protocol"])
        res["autoattack_protocol"] = " | ".join(protocols) + f"; {t.weights}"
    return res


def ood_family(t: Target, o: OODOptions, eps_l2: float) -> dict:
    """AUROC of logsumexp and max-softmax scores against OOD sets, clean and pushed adversarially."""
    cfg, n_test = t.cfg, t.n_test
    n_ood = min(o.n_ood, max(n_test, 1))
    sets, skipped = ood_sets(cfg, tuple(t.test_set.shape), n_ood, seed=cfg.seed + OOD_SEED, root=o.ood_root)
    adv_eps = parse_eps(o.ood_eps) if o.ood_eps is not None else eps_l2
    t.dtypes["ood_auroc"] = FLOAT32
    return {"ood_auroc": ood_auroc(t.model, t.test_set, sets, adv_eps, o.ood_steps, n_test, t.show_progress),
            "ood_skipped": skipped,
            "ood_protocol": (
                f"AUROC, in-distribution = first {n_test} test images (positive) vs {n_ood} images of "
                f"each OOD set ({', '.join(sets)}; uniform noise seed {cfg.seed + OOD_SEED}, patches = held-out test crops of "
                f"the bundled photos); scores logsumexp f(x) = -E(x) and max softmax; adv_* = OOD inputs first moved "
                f"by PGD-{o.ood_steps} ascending logsumexp inside an L2 ball of radius {adv_eps:.6g} (step "
                f"2.5*eps/steps); {t.weights}")}


def calibration_family(t: Target, o: CalibrationOptions) -> dict:
    """Expected calibration error of the max-softmax confidence, with its reliability bins."""
    c = calibration(t.model, t.test_set, t.n_test, o.n_bins, show_progress=t.show_progress)
    t.dtypes["calibration"] = FLOAT32
    return {"ece": c["ece"], "calibration_accuracy": c["accuracy"], "mean_confidence": c["mean_confidence"],
            "nll": c["nll"], "calibration_bins": c["bins"],
            "calibration_protocol": (f"expected calibration error of the max-softmax confidence, {o.n_bins} "
                                     f"equal-width bins, first {t.n_test} test images; {t.weights}")}
