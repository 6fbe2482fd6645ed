"""Open a trained model from a run directory or a weights file, with the config that built it."""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import torch
import yaml

from .checkpoint import extract_state_dict, file_hash, load_weights, safe_load
from .config import from_dict
from .data import data_info
from .errors import DualatError
from .methods import DEFAULT, method_of
from .models import create_model
from .rundir import RunDir

# which file a checkpoint name means inside a run directory, in order of preference
CHECKPOINTS = {
    "ema": [RunDir.EMA_WEIGHTS, RunDir.STATE],
    "model": [RunDir.WEIGHTS, RunDir.STATE],  # JEM keeps no EMA: its buffer belongs to the raw weights
    "best_fid": [RunDir.BEST_FD],
    "best_robust": [RunDir.BEST_ROBUST],
    "stage1": [RunDir.STAGE1],
    "last": [RunDir.STATE],
}


PRETRAINED_DIR = Path(__file__).parent / "pretrained"
PRETRAINED_PREFIX = "pretrained:"


def pretrained_names() -> list[str]:
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / RunDir.CONFIG).is_file()) if PRETRAINED_DIR.is_dir() else []


def resolve_source(source: str | Path) -> Path:
    """A run directory / checkpoint file, or `pretrained:NAME` -> the bundled model's folder."""
    text = str(source)
    if text.startswith(PRETRAINED_PREFIX):
        name = text[len(PRETRAINED_PREFIX):]
        if name not in pretrained_names():
            raise DualatError(f"no bundled model {name!r}; available: "
                              + ", ".join(PRETRAINED_PREFIX + n for n in pretrained_names()))
        return PRETRAINED_DIR / name
    return Path(source)


def default_output(source: str | Path, kind: str, checkpoint: str, stamped: bool = True) -> Path:
    """The one rule for where `dualat eval / sample / explain` write by default:
    <base>/<kind>-<checkpoint>[-<time>] for a run directory or a bundled model (base: the run
    directory, or ./pretrained-NAME), and <kind>-<file stem>[-<time>] beside a checkpoint file."""
    text = str(source)
    named = checkpoint if text.startswith(PRETRAINED_PREFIX) or Path(source).is_dir() else Path(source).stem
    stamp = f"-{datetime.datetime.now():%Y%m%d-%H%M%S}" if stamped else ""
    return output_base(source) / f"{kind}-{named}{stamp}"


def output_base(source: str | Path) -> Path:
    """Where outputs of a source go by default: the run directory, the folder of a checkpoint
    file, or ./pretrained-NAME for a bundled model (the installed package stays read-only)."""
    text = str(source)
    if text.startswith(PRETRAINED_PREFIX):
        return Path("pretrained-" + text[len(PRETRAINED_PREFIX):])
    return Path(source) if Path(source).is_dir() else Path(source).parent


def find_checkpoint(source: str | Path, which: str = "ema") -> tuple[Path, Path | None]:
    """(weights file, run directory or None) for a run directory, a file path or pretrained:NAME."""
    source = resolve_source(source)
    if source.is_dir():
        if which not in CHECKPOINTS:
            raise DualatError(f"unknown checkpoint {which!r}; use one of {', '.join(CHECKPOINTS)}")
        for name in CHECKPOINTS[which]:
            if (source / name).is_file():
                return source / name, source
        raise DualatError(f"{source} holds no {which} checkpoint ({' or '.join(CHECKPOINTS[which])}); "
                          "is it a finished `dualat train` run directory?")
    if source.is_file():
        return source, source.parent if (source.parent / RunDir.CONFIG).is_file() else None
    raise DualatError(f"{source} is neither a run directory nor a checkpoint file")


def load_model(source: str | Path, which: str = "ema", device="cpu"):
    """(model in eval mode, Config, info dict with path / sha256 / stage / iteration / T)."""
    if which == "ema":  # the default: the weights each method samples with
        which = {"jem": "model", "plain": "stage1"}.get(run_method(resolve_source(source)), which)
    path, run_dir = find_checkpoint(source, which)
    state = safe_load(path)
    cfg = None
    if run_dir is not None:
        cfg = from_dict(yaml.safe_load((run_dir / RunDir.CONFIG).read_text()))
    elif isinstance(state.get("config"), dict):
        cfg = from_dict(state["config"])
    if cfg is None:
        raise DualatError(f"{path} carries no config and has no config.yaml beside it; "
                          "keep the checkpoint inside its run directory")
    info = data_info(cfg.data)
    shape = info["shape"]
    model = create_model(cfg.model.name, num_classes=info["num_classes"], in_channels=shape[0],
                         image_size=shape[-1], mean=cfg.data.mean, std=cfg.data.std, **cfg.model.kwargs)
    weights = state["ema"]["model"] if which == "ema" and isinstance(state.get("ema"), dict) else extract_state_dict(state, prefer_ema=False)
    load_weights(model, weights, strict=True)
    model.to(device).eval()
    if cfg.model.channels_last and len(shape) == 3:  # sample / evaluate in the format the run trained in
        model = model.to(memory_format=torch.channels_last)
    curriculum_T = chosen_steps = None
    if run_dir is not None and (run_dir / RunDir.STATE).is_file():
        last = safe_load(run_dir / RunDir.STATE)
        curriculum_T = last.get("curriculum", {}).get("T") if last.get("stage") == 2 else None
        chosen_steps = chosen_sample_steps(run_dir)
    elif run_dir is not None and (run_dir / "card.json").is_file():  # a bundled model
        card = json.loads((run_dir / "card.json").read_text())
        curriculum_T, chosen_steps = card.get("final_T"), card.get("sample_steps")
        if cfg.eval.evalnet is None and (run_dir / "evalnet.safetensors").is_file():
            cfg.eval.evalnet = str(run_dir / "evalnet.safetensors")
    details = {"path": str(path), "sha256": file_hash(path), "checkpoint": which,
               "method": cfg.method,
               "stage": "jem" if method_of(cfg).replay_buffer else state.get("stage", 2 if path.suffix == ".safetensors"
                                                                               else None),
               "iteration": state.get("iteration"), "final_T": curriculum_T,
               "sample_steps": chosen_steps}
    return model, cfg, details


def chosen_sample_steps(run_dir: Path) -> int | None:
    """The steps the run's end-of-stage-2 sweep chose (RUN/sample_steps.json), or None."""
    p = run_dir / RunDir.SAMPLE_STEPS
    try:
        steps = json.loads(p.read_text()).get("sample_steps") if p.is_file() else None
    except (OSError, ValueError, AttributeError):
        raise DualatError(f"{p} is not readable JSON; delete it (the sampler then uses the final T) or "
                          f"re-create it with `dualat train --resume {run_dir}`") from None
    return steps if isinstance(steps, int) and steps >= 1 else None


def run_settings(source) -> dict:
    """The settings snapshot of a run directory as written ({} for anything else, or unreadable)."""
    p = Path(source) / RunDir.CONFIG
    if Path(source).is_dir() and p.is_file():
        try:
            settings = yaml.safe_load(p.read_text())
        except yaml.YAMLError:
            return {}
        return settings if isinstance(settings, dict) else {}
    return {}


def run_method(source) -> str:
    """The training method of a run directory (methods.DEFAULT for anything else)."""
    return run_settings(source).get("method", DEFAULT)


__all__ = ["load_model", "find_checkpoint", "resolve_source", "output_base", "pretrained_names", "CHECKPOINTS"]
