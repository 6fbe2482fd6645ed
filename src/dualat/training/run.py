"""`train()`: config -> data -> model -> stage 1 -> stage 2 -> run directory. Resumable.

This module orchestrates; `open_run` builds the stages' typed world (context.py's RunContext)."""
from __future__ import annotations

import datetime
import json
import platform
import time
from pathlib import Path

import torch
import yaml

from .. import distributed
from ..atomic import atomic_write_text
from ..checkpoint import extract_state_dict, safe_load
from ..config import Config, apply_overrides, from_dict, load_config, save_config
from ..data import load_split, make_seed_source
from ..errors import DualatError
from ..models import create_model
from ..precision import precision
from ..rundir import RunDir
from ..speed import compile_model, keep_large_buffers
from ..version import code_version
from .common import Diverged, resolve_device, seed_everything
from .context import RunContext
from .log import MetricLog, NullLog
from .loop import record_divergence
from .methods import run_method

def open_run(cfg: Config, run_dir: Path, show_progress: bool = True,
             dist: distributed.Dist | None = None) -> RunContext:
    """Load the data, check its shapes, build the seed sources and the model on the device: the
    stages' typed world (training/context.py). Raises DualatError before anything is written."""
    dist = dist or distributed.Dist()
    device = dist.device if dist.enabled else resolve_device(cfg.device)
    dtype, autocast = precision(cfg.amp, device)  # the one amp policy (dualat.precision)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d = cfg.data
    train_set, test_set = load_split(d, "train"), load_split(d, "test")
    shape = tuple(train_set.shape)
    if tuple(test_set.shape) != shape:
        raise DualatError(f"the {d.name} train split has inputs of shape {shape} but the test split "
                          f"{tuple(test_set.shape)}; set data.image_size / data.channels or fix the files")
    if list(train_set.classes) != list(test_set.classes):
        only = sorted(set(train_set.classes) ^ set(test_set.classes))[:5]
        raise DualatError(f"the {d.name} train and test splits have different classes "
                          f"(e.g. {only or 'their order'}); give both splits the same class folders")
    seeds_train = make_seed_source(d.seeds, shape, "train", train_set, d.seed_folder, cfg.seed)
    seeds_test = make_seed_source(d.seeds, shape, "test", train_set, d.seed_folder, cfg.seed)
    seed_everything(cfg.seed)
    try:
        model = create_model(cfg.model.name, num_classes=train_set.num_classes, in_channels=shape[0],
                             image_size=shape[-1], mean=d.mean, std=d.std, **cfg.model.kwargs)
    except (TypeError, ValueError, RuntimeError, MemoryError) as exc:  # e.g. model.kwargs={width: huge}
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DualatError(f"cannot build model.name={cfg.model.name} with model.kwargs={cfg.model.kwargs} "
                          f"({first})") from None
    if dist.enabled and cfg.distributed.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    memory_format = torch.channels_last if cfg.model.channels_last and len(shape) == 3 else None
    if memory_format is not None:
        model = model.to(memory_format=memory_format)
    if device.type == "cpu":
        keep_large_buffers()  # no page-fault storm on large activations (docs/performance.md)
    if cfg.model.compile:
        compile_model(model, device)
    log = MetricLog(run_dir, cfg.log.tensorboard) if dist.is_main else NullLog()
    return RunContext(cfg=cfg, dir=run_dir, model=model, train_set=train_set, test_set=test_set,
                      seeds_train=seeds_train, seeds_test=seeds_test, device=device, precision=dtype,
                      autocast=autocast, dist=dist, log=log, show_progress=show_progress and dist.is_main,
                      memory_format=memory_format)


def default_run_dir(cfg: Config) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.name}-{stamp}"


def train(config: str | Path | Config | None = None, overrides=(), out: str | Path | None = None,
          resume: str | Path | None = None, show_progress: bool = True) -> Path:
    """Train a DAT model (stage 1 then stage 2), or the JEM baseline with method=jem. Returns the
    run directory.

    config: a YAML path / preset name / Config; overrides: ['stage2.optim.lr=0.001', ...];
    resume: a run directory holding last.pt (overrides are then laid over its config snapshot).
    Raises DualatError for every user mistake and for a divergence (after keeping the last good
    checkpoint).
    """
    dist = distributed.from_env()  # torchrun's processes; a single process when launched plainly
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / RunDir.CONFIG).is_file():
            raise DualatError(f"cannot resume {run_dir}: no config.yaml there; give the run directory that `dualat train` wrote")
        cfg = from_dict(apply_overrides(_read_snapshot(run_dir / RunDir.CONFIG), overrides))
        state = _read_state(run_dir / RunDir.STATE) if (run_dir / RunDir.STATE).is_file() else None
        saved = state.get("world_size", 1) if state is not None else dist.world_size
        if saved != dist.world_size:
            raise DualatError(f"cannot resume {run_dir}: its last.pt was written by {saved} process(es), this launch "
                              f"has {dist.world_size}; resume with {saved} in all (torchrun --nnodes x "
                              f"--nproc_per_node = {saved}{', or no torchrun' if saved == 1 else ''})")
    else:
        cfg = config if isinstance(config, Config) else load_config(config, overrides)
        run_dir = Path(out) if out else default_run_dir(cfg)
        state = None
    distributed.check_config(cfg, dist.world_size)
    with distributed.session(dist, cfg.device, cfg.distributed.timeout_min):
        return _train(cfg, run_dir, state, resume is None, list(overrides), show_progress, dist)


def _train(cfg: Config, run_dir: Path, state: dict | None, fresh: bool, overrides: list, show_progress: bool,
           dist: distributed.Dist) -> Path:
    if fresh:
        run_dir = dist.broadcast(run_dir)  # the timestamped default differs between processes
        problem = None
        if dist.is_main and RunDir(run_dir).holds_run():
            problem = (f"run directory {run_dir} already holds a run; continue it with --resume {run_dir} "
                       "or choose another --out")
        problem = dist.broadcast(problem)  # decided before rank 0 writes anything there
        if problem:
            raise DualatError(problem)
    if state is None and cfg.stage1.init:  # a bad weights file is refused before anything is written
        try:
            extract_state_dict(safe_load(cfg.stage1.init))
        except DualatError as exc:
            raise DualatError(f"config key stage1.init: {exc}") from None
    run = open_run(cfg, run_dir, show_progress, dist)  # data first: a data error leaves no half-made run directory
    if dist.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / RunDir.CONFIG)
        except OSError as exc:
            raise DualatError(f"cannot write the run directory {run_dir} ({exc.strerror or exc}); "
                              "choose a writable --out") from None
    dist.barrier()
    run.log.write({"event": "start" if state is None else "resume", "stage": state and state["stage"],
                   "iteration": state and state["iteration"], "overrides": overrides,
                   "torch": torch.__version__, "python": platform.python_version(), "device": str(run.device),
                   "amp": cfg.amp, "precision": run.precision, "cpu_s": round(time.process_time(), 3), "threads": torch.get_num_threads(), "world_size": dist.world_size, **code_version()})
    t0 = time.time()
    summary = {"name": cfg.name, "run_dir": str(run_dir), "method": cfg.method, "amp": cfg.amp,
               "precision": run.precision}
    try:
        run_method(run, state, summary)
    except Diverged as exc:  # the one policy (training/loop.py)
        info = record_divergence(run, exc)
        if exc.summary is not None:
            summary[exc.section] = {**exc.summary, "diverged": info}
        _write_summary(run, summary, t0, diverged=info)
        kept = info["last_good_checkpoint"] or "no checkpoint yet"
        raise DualatError(f"{exc}; the last good checkpoint ({run_dir / kept}) was kept. Lower the learning rate "
                          f"(e.g. {exc.section}.optim.lr=...) and continue with --resume {run_dir}") from None
    finally:
        run.log.close()
    _write_summary(run, summary, t0)
    run.log.write({"event": "done", **{k: v for k, v in summary.items() if not isinstance(v, dict)},
                   "cpu_s": round(time.process_time(), 3)})
    return run_dir


def _write_summary(run: RunContext, summary: dict, t0: float, diverged: dict | None = None) -> None:
    """summary.json (atomic): what the run did; `diverged` is the divergence record or None."""
    summary.update({"diverged": diverged, "wall_s_this_session": round(time.time() - t0, 1)})
    if run.dist.is_main:
        atomic_write_text(run.dir / RunDir.SUMMARY, json.dumps(summary, indent=1))


def _read_snapshot(path: Path) -> dict:
    try:
        snapshot = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DualatError(f"cannot resume: {path} is not readable YAML ({first})") from None
    if not isinstance(snapshot, dict):
        raise DualatError(f"cannot resume: {path} does not hold a config mapping")
    return snapshot


def _read_state(path: Path) -> dict:
    state = safe_load(path)
    if not isinstance(state, dict) or state.get("stage") not in (1, 2, "jem") or "iteration" not in state:
        raise DualatError(f"cannot resume: {path} is not a `dualat train` checkpoint (no stage/iteration)")
    return state
