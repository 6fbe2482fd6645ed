"""The settings of each evaluation family, as small option objects, and `Target`: the checkpoint
under evaluation with what every family needs of it.

`evaluate(..., **options)` takes the fields of these objects as flat keywords (pgd_steps=20,
n_samples=500, ...) and `split_options` sorts them into their families (EvaluateOptions.family,
evaluate/settings.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import DualatError


@dataclass
class RobustOptions:
    """Clean, PGD (L2 and Linf, or one `norm`) and optionally AutoAttack accuracy."""
    norm: str | None = None             # only this norm (default: both)
    eps: float | str | None = None      # the budget of `norm` (or of the run's norm)
    eps_l2: float | str | None = None   # numbers or '8/255'; default robust.default_eps
    eps_linf: float | str | None = None
    pgd_steps: int = 20
    pgd_step_size: float | None = None  # default 2.5 * eps / steps
    restarts: int = 1
    autoattack: bool = False
    aa_version: str = "standard"
    aa_attacks: list[str] | None = None
    aa_n_iter: int | None = None
    n_autoattack: int | None = None     # default: n, or 1000 when n is None


@dataclass
class GenerativeOptions:
    """FD, IS-style score, precision / recall / density / coverage of fresh samples."""
    n_samples: int = 10000
    steps: int | None = None            # default: the run's final T (JEM: jem.eval_sgld_steps)
    step_size: float | None = None      # default: 2 x the training step (JEM: jem.sgld_step_size)
    sampler: str | None = None          # pgd | buffer | sgld (default: pgd, buffer for JEM runs)
    extractor: str = "evalnet"
    inception_weights: str | None = None
    ref_stats: str | None = None        # .npz with mu, sigma
    ref_split: str = "train"
    n_ref: int | None = None            # default n_samples
    k: int = 5
    is_splits: int = 10
    sweep_steps: list[int] | str | None = None  # also measure fresh samples at these step counts
    seeds: str | None = None            # the PGD sampler's seed source instead of the run's data.seeds


@dataclass
class OODOptions:
    """OOD detection AUROC, clean and after an adversarial push."""
    n_ood: int = 2000
    ood_eps: float | str | None = None  # default: the L2 eps
    ood_steps: int = 20
    ood_root: str | None = None


@dataclass
class CalibrationOptions:
    n_bins: int = 15


@dataclass
class CounterfactualOptions:
    """Counterfactuals of class-balanced test images, judged by an independent classifier
    (evaluate/counterfactuals.py)."""
    cf_n: int = 500                     # test images, class-balanced
    cf_target: str | int = "wrong"      # wrong, wrong-judge, true, all or a class index
    radii: list[float] | str | None = None  # L2 radii (default: `dualat explain`'s radii of the run)
    cf_steps: int = 50                  # PGD steps per radius (explain's step rule: 5 x radius / steps)
    judge: str | None = None            # a run / checkpoint the loader accepts (default: the evaluation network)
    cf_k: int = 5                       # neighbours of the k-NN distance ratio
    ae_iterations: int = 300            # training steps of each IM1/IM2 autoencoder (first use only)


FAMILY_OPTIONS = {"robust": RobustOptions, "generative": GenerativeOptions, "ood": OODOptions,
                  "calibrate": CalibrationOptions, "counterfactuals": CounterfactualOptions}
COUNTS = ("pgd_steps", "restarts", "aa_n_iter", "n_autoattack", "n_samples", "n_ref", "k", "is_splits", "n_ood",
          "ood_steps", "n_bins", "cf_n", "cf_steps", "cf_k", "ae_iterations")  # whole numbers >= 1 where given


def split_options(options: dict) -> dict:
    """{'robust': RobustOptions, ...} from flat keywords; an unknown keyword is a TypeError, as
    for any function, and a count below 1 a DualatError."""
    fields = {f.name: family for family, cls in FAMILY_OPTIONS.items() for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise TypeError(f"evaluate() got an unexpected keyword argument {unknown[0]!r}")
    for key in COUNTS:
        v = options.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise DualatError(f"{key} must be a whole number >= 1, got {v!r}")
    return {family: cls(**{k: v for k, v in options.items() if fields[k] == family})
            for family, cls in FAMILY_OPTIONS.items()}


@dataclass
class Target:
    """The checkpoint under evaluation: model (eval mode), its config and checkpoint info, the test
    split, how many test images the families use, the weights' one-line description, and where
    and how to run (device, dist, show_progress)."""
    model: object
    cfg: object
    info: dict
    test_set: object
    n_test: int
    weights: str
    device: object
    dist: object
    show_progress: bool
    dtype: str = "float32"              # what the run's (or the caller's) amp resolved to here
    autocast: object = None             # its autocast factory for the model's forwards, or None
    dtypes: dict = dataclasses.field(default_factory=dict)  # number -> the arithmetic that produced it
    robust_in_dtype: bool = False       # clean / PGD accuracy in `dtype` too (only when the caller chose amp)
