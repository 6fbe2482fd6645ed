"""Every setting of a run, as dataclasses; YAML load, dotted `key=value` overrides, old keys
mapped onto new ones (`upgrade`); the building is configparse.py's, the validation configcheck.py's
(names included: the registries of data/ and models/ add their checks there).

A config is plain data: `load_config(path, overrides)` returns a validated `Config`; `to_dict` /
`save_config` give the snapshot written into each run directory.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .atomic import atomic_write_text
from .configcheck import validate
from .configparse import build, deep_update, parse_override, to_dict
from .errors import DualatError

PRESET_DIR = Path(__file__).parent / "configs"


@dataclass
class DataConfig:
    name: str = "fashion_mnist"
    root: str | None = None          # dataset folder; None = the dataset's default place
    image_size: int | None = None    # for folder datasets (ImageNet: 256)
    channels: int | None = None
    num_classes: int | None = None   # only for `fake` / `imagefolder`
    seeds: str = "patches"           # patches | folder | noise | gaussian | gaussian_lowrank[:K] | gaussian_diag | gaussian_coarse[:S] | patches_jitter | photos_more | mix[:F]
    seed_folder: str | None = None   # for seeds=folder
    augment: str = "crop_flip"       # real BCE batch and seeds
    strong_augment: str = "strong"   # stage-1 batches and the stage-2 adversarial-training batch
    mean: list[float] | None = None  # input normalisation inside the model
    std: list[float] | None = None


@dataclass
class ModelConfig:
    name: str = "small_cnn"
    kwargs: dict = field(default_factory=dict)
    channels_last: bool = False      # NHWC activations: faster convolutions (docs/performance.md)
    compile: bool = False            # torch.compile the training/PGD forward (needs g++ on CPU)


@dataclass
class AttackConfig:
    """An untargeted PGD attack on cross-entropy: the run's threat model (`threat`), or stage 1's
    own training attack (`stage1.attack`)."""
    norm: str = "L2"            # L2 | Linf
    eps: float = 1.0            # Linf budgets may be written as 8/255
    step_size: float = 0.5
    steps: int = 5
    random_start: bool = True
    fast: bool = False          # "fast" AT (Wong et al. 2020): 1 step of 1.25 x eps from a random start; replaces steps, step_size


@dataclass
class OptimConfig:
    optimizer: str = "sgd"      # sgd | adamw
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    schedule: str = "cosine"    # cosine | constant
    warmup: int = 0             # iterations of linear learning-rate warm-up from 0


@dataclass
class Stage1Config:
    """Ordinary adversarial training, BatchNorm active."""
    iterations: int = 600
    batch_size: int = 128
    init: str | None = None     # start from an existing (robust) classifier's weights file
    optim: OptimConfig = field(default_factory=OptimConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)  # stage 1's training attack
    loss_bound: float = 1e4     # a loss beyond this counts as divergence


@dataclass
class Stage2Config:
    """Dual adversarial training (method.md sections 2-4)."""
    iterations: int = 340
    batch_size: int = 128
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, schedule="constant"))
    step_size: float = 0.2            # contrastive PGD step alpha (L2-normalised)
    objective: str = "class_logit"    # class_logit (paper's code) | logsumexp (unconditional)
    auc_threshold: float = 0.8
    auc_window: int | None = None     # None = ceil(1000 / batch_size)
    t_init: int = 0
    t_max: int = 40
    freeze_bn: bool = True
    ema_decay: float = 0.999          # warm-up min(decay, (1+n)/(10+n))
    loss_bound: float = 1e4           # a loss beyond this counts as divergence
    # where the contrastive samples come from: fresh (new seeds each iteration, descended T steps:
    # the paper's) | persistent (a buffer of chains, each continued by T steps when drawn:
    # training/chains.py); the three keys below apply to persistent
    contrastive: str = "fresh"
    buffer_size: int = 10000          # chains kept, each with its class label and age
    reinit_prob: float = 0.05         # chance that a drawn chain restarts from a fresh seed
    max_age: int = 100                # PGD steps since its seed; a chain that would pass it restarts


@dataclass
class JEMConfig:
    """The JEM baseline (method.md 10): CE + contrastive divergence with SGLD samples from a
    persistent replay buffer. Used when method=jem; trained from scratch (no stage 1)."""
    iterations: int = 2000
    batch_size: int = 128
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        optimizer="adamw", lr=1e-4, weight_decay=0.0, betas=[0.9, 0.999], schedule="constant", warmup=100))
    sgld_steps: int = 20
    sgld_step_size: float = 2.0       # alpha in x <- x - (alpha/2) grad E(x) + sigma eps (2 = JEM code's unit step)
    sgld_noise: float = 0.01          # sigma
    buffer_size: int = 10000
    reinit_prob: float = 0.05         # chance that a chain restarts from the initial distribution
    buffer_init: str = "uniform"      # uniform (JEM) | gaussian (per-class Gaussian fitted to data: JEM++ / SADA-JEM)
    clamp: bool = True                # keep SGLD chains inside the image domain [0, 1]
    px_weight: float = 1.0            # weight of the log p(x) term
    batchnorm: str = "frozen"         # frozen (JEM trains without BN: frozen at init = affine only) | active
    loss_bound: float = 1e4           # a loss or mean energy beyond this counts as divergence
    eval_sgld_steps: int | None = None  # fresh chains at evaluation; None = sgld_steps


@dataclass
class EvalConfig:
    """Periodic evaluation during stage 2, on the EMA model."""
    every: int = 100
    n_test: int = 1000             # test images for clean / PGD accuracy
    pgd_steps: int = 10
    n_samples: int = 500           # samples for the Frechet-distance proxy
    sample_steps: int | None = None       # None = the current curriculum T (at least 1)
    sample_step_size: float | None = None  # None = 2 x stage2.step_size
    evalnet: str | None = None     # plain classifier weights; None = cached, trained on first use
    evalnet_iterations: int = 1500
    step_sweep: bool = True        # at the end of stage 2, choose the sampler's steps (sample_steps.json)
    step_sweep_samples: int = 500  # samples per candidate step count in that sweep


@dataclass
class LogConfig:
    every: int = 10
    checkpoint_every: int = 50
    tensorboard: bool = False


@dataclass
class DistributedConfig:
    """Multi-process training under torchrun (README "Multi-GPU and multi-node"); ignored in one process."""
    sync_bn: bool = False        # SyncBatchNorm for active BatchNorm (stage 1); CUDA only
    timeout_min: float = 30.0    # how long a process waits for the others (e.g. while rank 0 trains the evalnet)


@dataclass
class Config:
    name: str = "run"
    method: str = "dat"        # dat | jem (the SGLD baseline) | plain (non-robust classifier, stage-1 loop)
    seed: int = 0
    device: str = "auto"       # auto | cpu | cuda | cuda:N
    threads: int = 0           # torch CPU threads; 0 = leave PyTorch's default
    amp: bool | str = "auto"   # auto: bf16 where native (CUDA bf16, AVX512-BF16 / AMX), float32 elsewhere; false: float32; true: bf16 on CUDA or a oneDNN-bf16 CPU
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # the run's threat model: stage 2's adversarial-training term, and the robustness every
    # evaluation (periodic, `dualat eval`, the study) and `dualat explain` measure against
    threat: AttackConfig = field(default_factory=AttackConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    jem: JEMConfig = field(default_factory=JEMConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):  # a name too long for the file system, an embedded NUL
        return False


def resolve_config_path(path: str | Path) -> Path:
    """A file path, or the name of a preset shipped in `configs/` (with or without .yaml)."""
    p = Path(path)
    if _is_file(p):
        return p
    for cand in (PRESET_DIR / p.name, PRESET_DIR / f"{p.name}.yaml"):
        if _is_file(cand):
            return cand
    presets = ", ".join(sorted(q.stem for q in PRESET_DIR.glob("*.yaml")))
    raise DualatError(f"config file {path} not found; give a YAML file path or a preset name ({presets})")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Read a YAML preset/file, apply dotted overrides, validate. Raises DualatError."""
    raw: dict = {}
    if path is not None:
        p = resolve_config_path(path)
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DualatError(f"config file {p} is not valid YAML ({first}); fix the file") from None
        if not isinstance(raw, dict):
            raise DualatError(f"config file {p} must hold a mapping of settings, not {type(raw).__name__}")
        raw.setdefault("name", p.stem)
    return from_dict(apply_overrides(raw, overrides))


def apply_overrides(values: dict, overrides) -> dict:
    """A copy of `values` (upgraded to the new keys) with each 'dotted.key=value' laid over it."""
    values = upgrade(values)
    for text in overrides:
        keys, value = parse_override(text)
        node = values
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return values


def from_dict(values: dict) -> Config:
    """A validated Config from a mapping of settings (new keys, or the old ones `upgrade` maps)."""
    cfg = build(Config, upgrade(values))
    validate(cfg)
    return cfg


def upgrade(values: dict) -> dict:
    """An old config's settings on the new keys (a copy; new configs pass through unchanged).

    - stage2.attack (the threat model, before it had a home of its own) is read as `threat`;
      its values win over a `threat` section beside it (an old-style override on a new file).
      Stage 1, which then used stage2.loss_bound, gets that bound as stage1.loss_bound.
    - log.progress, which nothing read, is dropped.
    """
    values = copy.deepcopy(values)
    s2 = values.get("stage2")
    if isinstance(s2, dict) and "attack" in s2:
        old = s2.pop("attack")
        if not isinstance(old, dict):
            raise DualatError(f"config key stage2.attack (now `threat`) must be a mapping of settings, got {old!r}")
        threat = values.setdefault("threat", {})
        if not isinstance(threat, dict):
            raise DualatError(f"config key threat must be a mapping of settings, got {threat!r}")
        deep_update(threat, old)
        s1 = values.setdefault("stage1", {})
        if isinstance(s1, dict) and "loss_bound" in s2 and "loss_bound" not in s1:
            s1["loss_bound"] = s2["loss_bound"]
    if isinstance(values.get("log"), dict):
        values["log"].pop("progress", None)
    return values


def save_config(cfg: Config, path: Path) -> None:
    """Write the snapshot atomically (a kill mid-write leaves the previous file)."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
