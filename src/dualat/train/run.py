"""`train()`: config -> data -> model -> stage 1 -> stage 2 -> run directory. Resumable."""
from __future__ import annotations

import datetime
import json
import platform
import time
from pathlib import Path

import torch
import yaml

from ..checkpoint import atomic_save, safe_load
from ..config import Config, from_dict, load_config, save_config, to_dict, parse_override
from ..data import load_dataset, make_seed_source
from ..errors import DualatError
from ..evaluate import GenerationProbe, reference_stats
from ..images import class_grid, save_png
from ..models import create_model
from ..speed import compile_model, keep_large_buffers
from .common import Diverged, autocast_factory, parameters_finite, resolve_device, rng_state, seed_everything
from .dat import run_stage2
from .evalnet import Features, load_evalnet
from .log import MetricLog
from .stage1 import run_stage1


class Run:
    """What a training run holds: config, run directory, device, data, model, log."""

    def __init__(self, cfg: Config, run_dir: Path, show_progress: bool = True):
        self.cfg, self.dir, self.show_progress = cfg, run_dir, show_progress
        self.device = resolve_device(cfg.device)
        self.autocast = autocast_factory(self.device, cfg.amp)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        d = cfg.data
        kw = dict(root=d.root, image_size=d.image_size, channels=d.channels, num_classes=d.num_classes)
        self.train_set = load_dataset(d.name, "train", **kw)
        self.test_set = load_dataset(d.name, "test", **kw)
        shape = tuple(self.train_set.shape)
        self.seeds_train = make_seed_source(d.seeds, shape, "train", self.train_set, d.seed_folder, cfg.seed)
        self.seeds_test = make_seed_source(d.seeds, shape, "test", self.train_set, d.seed_folder, cfg.seed)
        seed_everything(cfg.seed)
        self.model = create_model(cfg.model.name, num_classes=self.train_set.num_classes,
                                  in_channels=shape[0], image_size=shape[-1], mean=d.mean, std=d.std,
                                  **cfg.model.kwargs).to(self.device)
        self.memory_format = torch.channels_last if cfg.model.channels_last and len(shape) == 3 else None
        if self.memory_format is not None:
            self.model = self.model.to(memory_format=self.memory_format)
        if self.device.type == "cpu":
            keep_large_buffers()  # no page-fault storm on large activations (docs/performance.md)
        if cfg.model.compile:
            compile_model(self.model, self.device)
        self.log = MetricLog(run_dir, cfg.log.tensorboard)

    def to_device(self, *tensors):
        out = []
        for t in tensors:
            t = t.to(self.device, non_blocking=True)
            if self.memory_format is not None and t.dim() == 4:
                t = t.contiguous(memory_format=self.memory_format)
            out.append(t)
        return out

    def say(self, text: str) -> None:
        if self.show_progress:
            print(text, flush=True)

    def save_state(self, state: dict) -> None:
        """Write last.pt atomically, refusing to write a model that holds NaN/inf."""
        if not parameters_finite(self.model):
            raise Diverged(state["stage"], state["iteration"], {"parameters": float("nan")})
        state["rng"] = rng_state()
        state["config"] = to_dict(self.cfg)
        atomic_save(state, self.dir / "last.pt")

    def save_grid(self, x, labels, name: str) -> None:
        if x.dim() == 4:
            save_png(class_grid(x, labels, self.train_set.num_classes, scale=2), self.dir / "samples" / name)

    def generation_probe(self) -> GenerationProbe | None:
        """Seeds, labels and reference statistics for the Frechet-distance proxy (None for 2-D data)."""
        if len(self.train_set.shape) != 3:
            return None
        e = self.cfg.eval
        net = load_evalnet(self.cfg.data, e.evalnet, e.evalnet_iterations, self.show_progress).to(self.device)
        feats = Features(net)
        ref = reference_stats(feats, self.test_set)
        return GenerationProbe(feats, ref, self.seeds_test, self.train_set.num_classes, e.n_samples,
                               seed=self.cfg.seed + 99)


def default_run_dir(cfg: Config) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.name}-{stamp}"


def train(config: str | Path | Config | None = None, overrides=(), out: str | Path | None = None,
          resume: str | Path | None = None, show_progress: bool = True) -> Path:
    """Train a DAT model: stage 1 then stage 2. Returns the run directory.

    config: a YAML path / preset name / Config; overrides: ['stage2.optim.lr=0.001', ...];
    resume: a run directory holding last.pt (overrides are then laid over its config snapshot).
    Raises DualatError for every user mistake and for a divergence (after keeping the last good
    checkpoint).
    """
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise DualatError(f"cannot resume {run_dir}: no config.yaml there; give the run directory that `dualat train` wrote")
        snapshot = yaml.safe_load((run_dir / "config.yaml").read_text())
        for text in overrides:
            keys, value = parse_override(text)
            node = snapshot
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = value
        cfg = from_dict(snapshot)
        state = safe_load(run_dir / "last.pt") if (run_dir / "last.pt").is_file() else None
    else:
        cfg = config if isinstance(config, Config) else load_config(config, overrides)
        run_dir = Path(out) if out else default_run_dir(cfg)
        if (run_dir / "config.yaml").exists() or (run_dir / "last.pt").exists():
            raise DualatError(f"run directory {run_dir} already holds a run; continue it with --resume {run_dir} "
                              "or choose another --out")
        state = None
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    run = Run(cfg, run_dir, show_progress)
    run.log.write({"event": "start" if state is None else "resume", "stage": state and state["stage"],
                   "iteration": state and state["iteration"], "overrides": list(overrides),
                   "torch": torch.__version__, "python": platform.python_version(), "device": str(run.device),
                   "threads": torch.get_num_threads()})
    t0 = time.time()
    try:
        summary = _run_stages(run, state)
    except Diverged as exc:
        info = {"stage": exc.stage, "iteration": exc.iteration,
                "values": {k: str(v) for k, v in exc.values.items()}}
        run.log.write({"event": "diverged", **info})
        (run_dir / "diverged.json").write_text(json.dumps(info, indent=1))
        kept = "last.pt" if (run_dir / "last.pt").exists() else "no checkpoint yet"
        raise DualatError(f"{exc}; the last good checkpoint ({run_dir / kept}) was kept. Lower the learning rate "
                          f"(e.g. stage{exc.stage}.optim.lr=...) and continue with --resume {run_dir}") from None
    finally:
        run.log.close()
    summary["wall_s_this_session"] = round(time.time() - t0, 1)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    run.log.write({"event": "done", **{k: v for k, v in summary.items() if not isinstance(v, dict)}})
    return run_dir


def _run_stages(run: Run, state: dict | None) -> dict:
    summary = {"name": run.cfg.name, "run_dir": str(run.dir)}
    stage1_file = run.dir / "stage1.pt"
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
    summary["stage2"] = run_stage2(run, state)
    return summary
