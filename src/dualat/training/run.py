"""`train()`: config -> data -> model -> stage 1 -> stage 2 -> run directory. Resumable."""
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
from ..checkpoint import atomic_save, extract_state_dict, safe_load
from ..config import Config, apply_overrides, from_dict, load_config, save_config, to_dict
from ..data import load_split, make_seed_source
from ..errors import DualatError
from ..evaluate import GenerationProbe, reference_stats
from ..evaluate.evalnet import load_evalnet
from ..evaluate.extractors import ClassifierExtractor
from ..images import class_grid, save_png
from ..models import create_model
from ..precision import BF16, FLOAT32
from ..rundir import RunDir
from ..speed import compile_model, keep_large_buffers
from ..version import code_version
from .common import Diverged, autocast_factory, parameters_finite, resolve_device, rng_state, seed_everything
from .dat import run_stage2
from .jem import run_jem
from .log import MetricLog, NullLog
from .loop import record_divergence
from .stage1 import run_stage1

PER_RANK = ("streams", "generators", "rng")  # checkpoint entries each process has its own of


class Run:
    """What a training run holds: config, run directory, device, data, model, log, and `dist`
    (this process among the torchrun processes; rank 0 alone logs and writes files)."""

    def __init__(self, cfg: Config, run_dir: Path, show_progress: bool = True,
                 dist: distributed.Dist | None = None):
        self.dist = dist or distributed.Dist()
        self.cfg, self.dir, self.show_progress = cfg, run_dir, show_progress and self.dist.is_main
        self.device = self.dist.device if self.dist.enabled else resolve_device(cfg.device)
        self.autocast = autocast_factory(self.device, cfg.amp)
        self.precision = BF16 if self.autocast is not None else FLOAT32  # what amp resolved to here
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        d = cfg.data
        self.train_set, self.test_set = load_split(d, "train"), load_split(d, "test")
        shape = tuple(self.train_set.shape)
        if tuple(self.test_set.shape) != shape:
            raise DualatError(f"the {d.name} train split has inputs of shape {shape} but the test split "
                              f"{tuple(self.test_set.shape)}; set data.image_size / data.channels or fix the files")
        if list(self.train_set.classes) != list(self.test_set.classes):
            only = sorted(set(self.train_set.classes) ^ set(self.test_set.classes))[:5]
            raise DualatError(f"the {d.name} train and test splits have different classes "
                              f"(e.g. {only or 'their order'}); give both splits the same class folders")
        self.seeds_train = make_seed_source(d.seeds, shape, "train", self.train_set, d.seed_folder, cfg.seed)
        self.seeds_test = make_seed_source(d.seeds, shape, "test", self.train_set, d.seed_folder, cfg.seed)
        seed_everything(cfg.seed)
        try:
            self.model = create_model(cfg.model.name, num_classes=self.train_set.num_classes,
                                      in_channels=shape[0], image_size=shape[-1], mean=d.mean, std=d.std,
                                      **cfg.model.kwargs)
        except (TypeError, ValueError, RuntimeError, MemoryError) as exc:  # e.g. model.kwargs={width: huge}
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise DualatError(f"cannot build model.name={cfg.model.name} with model.kwargs={cfg.model.kwargs} "
                              f"({first})") from None
        if self.dist.enabled and cfg.distributed.sync_bn:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model = self.model.to(self.device)
        self.memory_format = torch.channels_last if cfg.model.channels_last and len(shape) == 3 else None
        if self.memory_format is not None:
            self.model = self.model.to(memory_format=self.memory_format)
        if self.device.type == "cpu":
            keep_large_buffers()  # no page-fault storm on large activations (docs/performance.md)
        if cfg.model.compile:
            compile_model(self.model, self.device)
        self.log = MetricLog(run_dir, cfg.log.tensorboard) if self.dist.is_main else NullLog()

    def trainer(self) -> torch.nn.Module:
        """The module for training forward/backward passes: DDP-wrapped model under torchrun."""
        return self.dist.wrap(self.model)

    def own_state(self, state: dict) -> dict:
        """A checkpoint with this process's own stream / generator / RNG states on top."""
        if "ranks" not in state:
            return state
        return {**state, **{k: state["ranks"][self.dist.rank][k] for k in PER_RANK}}

    def to_device(self, *tensors):
        out = []
        for t in tensors:
            t = t.to(self.device, non_blocking=True)
            if self.memory_format is not None and t.dim() == 4:
                t = t.contiguous(memory_format=self.memory_format)
            out.append(t)
        return out

    def attack_text(self) -> str:
        """How the periodic evaluations attack: 'PGD-10 L2 eps=0.5' (the run's threat model)."""
        a = self.cfg.threat
        return f"PGD-{self.cfg.eval.pgd_steps} {a.norm} eps={a.eps:g}"

    def say(self, text: str) -> None:
        if self.show_progress:
            print(text, flush=True)

    def save_state(self, state: dict) -> None:
        """Write last.pt atomically, refusing to write a model that holds NaN/inf.

        Under torchrun every process calls this: the states of all processes (streams,
        generators, RNG, a digest of the parameters, T) are gathered into `ranks` and rank 0
        writes the file, which then holds what a resume needs on every process.
        """
        if not parameters_finite(self.model):
            raise Diverged(state["stage"], state["iteration"], {"parameters": float("nan")})
        state["rng"] = rng_state()
        if self.dist.enabled:
            mine = {k: state[k] for k in PER_RANK}
            mine.update(params_sha256=distributed.parameter_digest(self.model),
                        T=state["curriculum"]["T"] if "curriculum" in state else None)
            state["ranks"] = self.dist.gather_objects(mine)
            state["world_size"] = self.dist.world_size
            self._check_lockstep(state)
        state["config"] = to_dict(self.cfg)
        self.write(state, RunDir.STATE)

    def _check_lockstep(self, state: dict) -> None:
        """Log (rank 0) when processes no longer hold the same parameters or T; never expected."""
        ranks = state["ranks"]
        if len({(r["params_sha256"], r["T"]) for r in ranks}) > 1:
            self.log.write({"event": "ranks_differ", "stage": state["stage"], "iteration": state["iteration"],
                            "T": [r["T"] for r in ranks], "params_sha256": [r["params_sha256"] for r in ranks]})
            self.say(f"warning: the {len(ranks)} processes hold different parameters or T at iteration "
                     f"{state['iteration']} (see metrics.jsonl); please report this")

    def write(self, obj, name: str) -> None:
        """atomic_save into the run directory, by rank 0 alone."""
        if self.dist.is_main:
            atomic_save(obj, self.dir / name)

    def save_grid(self, x, labels, name: str) -> None:
        if x.dim() == 4 and self.dist.is_main:
            save_png(class_grid(x, labels, self.train_set.num_classes, scale=2), self.dir / "samples" / name)

    def generation_probe(self) -> GenerationProbe | None:
        """Seeds, labels and reference statistics for the Frechet-distance proxy (None for 2-D data)."""
        if len(self.train_set.shape) != 3:
            return None
        e = self.cfg.eval
        if not self.dist.is_main:
            self.dist.barrier()  # rank 0 trains and caches the evaluation network first, if needed
        net = load_evalnet(self.cfg.data, e.evalnet, e.evalnet_iterations, self.show_progress).to(self.device)
        if self.dist.is_main:
            self.dist.barrier()
        feats = ClassifierExtractor(net).features_and_predictions
        ref = reference_stats(feats, self.test_set)
        return GenerationProbe(feats, ref, self.seeds_test, self.train_set.num_classes, e.n_samples,
                               seed=self.cfg.seed + 99)


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
    run = Run(cfg, run_dir, show_progress, dist)  # data first: a data error leaves no half-made run directory
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
        _run_stages(run, state, summary)
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


def _write_summary(run: Run, summary: dict, t0: float, diverged: dict | None = None) -> None:
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


def _run_stages(run: Run, state: dict | None, summary: dict) -> None:
    """Run the method's stages, adding each one's result to `summary` as it finishes."""
    if run.cfg.method == "jem":
        summary["jem"] = run_jem(run, state)
        return
    stage1_file = run.dir / RunDir.STAGE1
    if state is None or state["stage"] == 1:
        finished = state is not None and state["iteration"] >= run.cfg.stage1.iterations and stage1_file.is_file()
        if finished:
            summary["stage1"] = safe_load(stage1_file)["eval"]
            run.model.load_state_dict(state["model"])
        else:
            summary["stage1"] = run_stage1(run, state)
        state = None
    else:
        summary["stage1"] = safe_load(stage1_file)["eval"] if stage1_file.is_file() else None
    if run.cfg.method == "plain":  # a plain classifier: stage 1's loop with clean cross-entropy, no stage 2
        return
    summary["stage2"] = run_stage2(run, state)
