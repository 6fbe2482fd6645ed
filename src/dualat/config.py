"""Every setting of a run, as dataclasses; YAML load, dotted `key=value` overrides, validation.

A config is plain data: `load_config(path, overrides)` returns a validated `Config`; `to_dict` /
`save_config` give the snapshot written into each run directory.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import DualatError

PRESET_DIR = Path(__file__).parent / "configs"


@dataclass
class DataConfig:
    name: str = "fashion_mnist"
    root: str | None = None          # dataset folder; None = the dataset's default place
    image_size: int | None = None    # for folder datasets (ImageNet: 256)
    channels: int | None = None
    num_classes: int | None = None   # only for `fake` / `imagefolder`
    seeds: str = "patches"           # patches | folder | noise | gaussian | patches_jitter | photos_more | mix[:F]
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
    """Threat model of adversarial training: untargeted PGD on cross-entropy."""
    norm: str = "L2"            # L2 | Linf
    eps: float = 1.0            # Linf budgets may be written as 8/255
    step_size: float = 0.5
    steps: int = 5
    random_start: bool = True


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
    attack: AttackConfig = field(default_factory=AttackConfig)


@dataclass
class Stage2Config:
    """Dual adversarial training (method.md sections 2-4)."""
    iterations: int = 340
    batch_size: int = 128
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, schedule="constant"))
    attack: AttackConfig = field(default_factory=AttackConfig)
    step_size: float = 0.2            # contrastive PGD step alpha (L2-normalised)
    objective: str = "class_logit"    # class_logit (paper's code) | logsumexp (unconditional)
    auc_threshold: float = 0.8
    auc_window: int | None = None     # None = ceil(1000 / batch_size)
    t_init: int = 0
    t_max: int = 40
    freeze_bn: bool = True
    ema_decay: float = 0.999          # warm-up min(decay, (1+n)/(10+n))
    loss_bound: float = 1e4           # a loss beyond this counts as divergence


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


@dataclass
class LogConfig:
    every: int = 10
    checkpoint_every: int = 50
    progress: bool = True
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
    amp: bool = False          # bf16 autocast on CUDA, or on a CPU with native bf16 (AMX / AVX512-BF16)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    jem: JEMConfig = field(default_factory=JEMConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


# --------------------------------------------------------------------------- building

def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _base_type(tp):
    """(allowed python types, is_optional) of an annotation like `int | None`."""
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        return _base_type(inner[0])[0], True
    if origin is not None:
        return origin, False
    return tp, False


def _coerce(key: str, value, tp):
    base, optional = _base_type(tp)
    if value is None:
        if optional:
            return None
        raise DualatError(f"config key {key} may not be null; give a {base.__name__}")
    if base is float:
        if isinstance(value, str):
            value = _fraction(key, value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DualatError(f"config key {key} must be a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:
            raise DualatError(f"config key {key} is too large a number ({len(str(value))} digits)") from None
    if base is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise DualatError(f"config key {key} must be an integer, got {value!r}")
        return int(value)
    if base is bool:
        if not isinstance(value, bool):
            raise DualatError(f"config key {key} must be true or false, got {value!r}")
        return value
    if base is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise DualatError(f"config key {key} must be a string, got {value!r}")
        return str(value)
    if base is list:
        if not isinstance(value, (list, tuple)):
            raise DualatError(f"config key {key} must be a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, float) for i, v in enumerate(value)]
    if base is dict:
        if not isinstance(value, dict):
            raise DualatError(f"config key {key} must be a mapping, got {value!r}")
        return dict(value)
    return value


def parse_number(text) -> float:
    """A number, or '8/255' style text as robustness papers write Linf epsilons.

    Raises ValueError or ZeroDivisionError; callers turn that into their own message.
    """
    if isinstance(text, str) and "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


def _fraction(key: str, text: str) -> float:
    try:
        return parse_number(text)
    except (ValueError, ZeroDivisionError):
        raise DualatError(f"config key {key} must be a number like 0.5 or 8/255, got {text!r}") from None


def _build(cls, values: dict, prefix: str = ""):
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    obj = cls()
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(names)}"
            shown = f"{prefix}{key}" if str(key).isprintable() else repr(f"{prefix}{key}")
            raise DualatError(f"unknown config key {shown}{hint}")
        base, _ = _base_type(hints[key])
        if dataclasses.is_dataclass(base):
            if not isinstance(value, dict):
                raise DualatError(f"config key {prefix}{key} must be a mapping of settings, got {value!r}")
            # a partial section is laid over this field's own defaults (they differ per stage)
            value = _merge(getattr(obj, key), value, prefix + key + ".")
        else:
            value = _coerce(prefix + key, value, hints[key])
        setattr(obj, key, value)
    return obj


def _merge(default, partial: dict, prefix: str):
    merged = to_dict(default)
    _deep_update(merged, partial)
    return _build(type(default), merged, prefix)


def _deep_update(base: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "kwargs":
            _deep_update(base[key], value)
        else:
            base[key] = value


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def parse_override(text: str) -> tuple[list[str], object]:
    """'stage2.lr=0.01' -> (['stage2', 'lr'], 0.01); values parsed as YAML scalars."""
    if "=" not in text:
        raise DualatError(f"override {text!r} is not key=value; write e.g. stage2.optim.lr=0.001")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise DualatError(f"override {text!r} has an empty key; write e.g. stage2.optim.lr=0.001")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


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
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    cfg = _build(Config, raw)
    validate(cfg)
    return cfg


def from_dict(values: dict) -> Config:
    cfg = _build(Config, values)
    validate(cfg)
    return cfg


def save_config(cfg: Config, path: Path) -> None:
    """Write the snapshot atomically (a kill mid-write leaves the previous file)."""
    from .checkpoint import atomic_write_text
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


# --------------------------------------------------------------------------- validation

def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise DualatError(f"config key {key} {message}")


def _check_choice(value, key: str, choices) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise DualatError(f"config key {key}={value!r} is not one of {', '.join(choices)}{hint}")


def _validate_optim(o: OptimConfig, key: str) -> None:
    _check_choice(o.optimizer, f"{key}.optimizer", ["sgd", "adamw"])
    _check_choice(o.schedule, f"{key}.schedule", ["cosine", "constant"])
    _check(o.lr > 0 and math.isfinite(o.lr), f"{key}.lr", f"must be a positive number, got {o.lr}")
    _check(0 <= o.momentum < 1, f"{key}.momentum", f"must be in [0, 1), got {o.momentum}")
    _check(0 <= o.weight_decay < math.inf, f"{key}.weight_decay", f"must be a number >= 0, got {o.weight_decay}")
    _check(o.warmup >= 0, f"{key}.warmup", f"must be >= 0 iterations, got {o.warmup}")
    _check(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), f"{key}.betas",
           f"must be two numbers in [0, 1), got {o.betas}")


def _validate_attack(a: AttackConfig, key: str) -> None:
    _check_choice(a.norm, f"{key}.norm", ["L2", "Linf"])
    _check(a.eps > 0 and math.isfinite(a.eps), f"{key}.eps", f"must be a positive number, got {a.eps}")
    _check(a.step_size > 0 and math.isfinite(a.step_size), f"{key}.step_size",
           f"must be a positive number, got {a.step_size}")
    _check(a.steps >= 1, f"{key}.steps", f"must be at least 1, got {a.steps}")


def _validate_jem(j: JEMConfig) -> None:
    _check(j.iterations >= 0, "jem.iterations", f"must be >= 0, got {j.iterations}")
    _check(j.batch_size >= 2, "jem.batch_size", f"must be at least 2, got {j.batch_size}")
    _validate_optim(j.optim, "jem.optim")
    _check(j.sgld_steps >= 1, "jem.sgld_steps", f"must be at least 1, got {j.sgld_steps}")
    _check(j.sgld_step_size > 0 and math.isfinite(j.sgld_step_size), "jem.sgld_step_size",
           f"must be positive, got {j.sgld_step_size}")
    _check(j.sgld_noise >= 0 and math.isfinite(j.sgld_noise), "jem.sgld_noise", f"must be >= 0, got {j.sgld_noise}")
    _check(j.buffer_size >= j.batch_size, "jem.buffer_size",
           f"must hold at least one batch (jem.batch_size={j.batch_size}), got {j.buffer_size}")
    _check(0 <= j.reinit_prob <= 1, "jem.reinit_prob", f"must be in [0, 1], got {j.reinit_prob}")
    _check_choice(j.buffer_init, "jem.buffer_init", ["uniform", "gaussian"])
    _check(j.px_weight >= 0, "jem.px_weight", f"must be >= 0, got {j.px_weight}")
    _check_choice(j.batchnorm, "jem.batchnorm", ["frozen", "active"])
    _check(j.loss_bound > 0, "jem.loss_bound", "must be positive")
    _check(j.eval_sgld_steps is None or j.eval_sgld_steps >= 1, "jem.eval_sgld_steps", "must be >= 1 or null")


def _validate_data(d: DataConfig) -> None:
    _check(d.image_size is None or d.image_size >= 1, "data.image_size", f"must be >= 1 or null, got {d.image_size}")
    _check(d.channels in (None, 1, 3), "data.channels", f"must be 1, 3 or null, got {d.channels}")
    _check(d.num_classes is None or d.num_classes >= 2, "data.num_classes",
           f"must be >= 2 or null, got {d.num_classes}")
    for key, values in (("data.mean", d.mean), ("data.std", d.std)):
        if values is None:
            continue
        _check(len(values) >= 1 and all(math.isfinite(v) for v in values), key,
               f"must be one number or one per channel, all finite, got {values}")
    _check(d.std is None or all(v > 0 for v in d.std), "data.std", f"must be positive, got {d.std}")


def _validate_model_kwargs(name: str, kwargs: dict) -> None:
    from .models.registry import _check_kwargs, get_model_spec
    try:
        _check_kwargs(get_model_spec(name), kwargs)
    except DualatError as exc:
        raise DualatError(f"config key model.kwargs: {exc}") from None


def _seed_base(name) -> str:
    """data.seeds without mix's fraction ('mix:0.3' -> 'mix'); a bad fraction names the key."""
    from .data.seeds_extra import parse_seed_name
    try:
        return parse_seed_name(name)[0]
    except DualatError as exc:
        raise DualatError(f"config key data.seeds: {exc}") from None


def validate(cfg: Config) -> None:
    """Raise DualatError naming the first bad key; called before any work starts."""
    from .data import DATASETS, SEED_SOURCES
    from .models import list_models

    _check_choice(cfg.method, "method", ["dat", "jem", "plain"])
    _check_choice(cfg.data.name, "data.name", sorted(DATASETS))
    _check_choice(_seed_base(cfg.data.seeds), "data.seeds", list(SEED_SOURCES) + ["mix:F"])
    _check(cfg.data.seeds != "folder" or bool(cfg.data.seed_folder), "data.seed_folder",
           "must name an image folder when data.seeds=folder")
    for k in ("augment", "strong_augment"):
        _check_choice(getattr(cfg.data, k), f"data.{k}", ["none", "flip", "crop", "crop_flip", "strong"])
    _validate_data(cfg.data)
    _check_choice(cfg.model.name, "model.name", list_models())
    _validate_model_kwargs(cfg.model.name, cfg.model.kwargs)
    _check(bool(re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.device)), "device",
           f"must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")
    _check(cfg.threads >= 0, "threads", f"must be >= 0, got {cfg.threads}")
    _check(0 <= cfg.seed < 2**32, "seed", f"must be an integer in [0, 2^32), got {cfg.seed}")
    _check(bool(cfg.name) and cfg.name not in (".", "..") and not re.search(r"[/\\\x00]", cfg.name), "name",
           f"must be a plain name (it names the run directory), got {cfg.name!r}")
    s1, s2, ev = cfg.stage1, cfg.stage2, cfg.eval
    _check(s1.iterations >= 0, "stage1.iterations", f"must be >= 0, got {s1.iterations}")
    _check(s2.iterations >= 0, "stage2.iterations", f"must be >= 0, got {s2.iterations}")
    for key, b in (("stage1.batch_size", s1.batch_size), ("stage2.batch_size", s2.batch_size)):
        _check(b >= 2, key, f"must be at least 2, got {b}")
    _validate_optim(s1.optim, "stage1.optim")
    _validate_optim(s2.optim, "stage2.optim")
    _validate_attack(s1.attack, "stage1.attack")
    _validate_attack(s2.attack, "stage2.attack")
    _check(s2.step_size > 0 and math.isfinite(s2.step_size), "stage2.step_size",
           f"must be a positive number, got {s2.step_size}")
    _check_choice(s2.objective, "stage2.objective", ["class_logit", "logsumexp"])
    _check(0 < s2.auc_threshold < 1, "stage2.auc_threshold", f"must be in (0, 1), got {s2.auc_threshold}")
    _check(s2.auc_window is None or s2.auc_window >= 1, "stage2.auc_window", "must be >= 1 or null")
    _check(0 <= s2.t_init <= s2.t_max, "stage2.t_init", f"must be in [0, t_max={s2.t_max}], got {s2.t_init}")
    _check(0 < s2.ema_decay < 1, "stage2.ema_decay", f"must be in (0, 1), got {s2.ema_decay}")
    _check(s2.loss_bound > 0, "stage2.loss_bound", "must be positive")
    _validate_jem(cfg.jem)
    _check(ev.every >= 1, "eval.every", f"must be >= 1, got {ev.every}")
    _check(ev.n_test >= 1 and ev.n_samples >= 2, "eval.n_test", "and eval.n_samples must be >= 1 and >= 2")
    _check(ev.pgd_steps >= 1, "eval.pgd_steps", "must be >= 1")
    _check(ev.sample_steps is None or ev.sample_steps >= 0, "eval.sample_steps", "must be >= 0")
    _check(ev.sample_step_size is None or 0 < ev.sample_step_size < math.inf, "eval.sample_step_size",
           "must be a positive number or null")
    _check(ev.evalnet_iterations >= 1, "eval.evalnet_iterations", "must be >= 1")
    _check(cfg.log.every >= 1, "log.every", "must be >= 1")
    _check(cfg.log.checkpoint_every >= 1, "log.checkpoint_every", "must be >= 1")
    _check(cfg.distributed.timeout_min > 0, "distributed.timeout_min", "must be positive")
