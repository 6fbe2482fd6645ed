"""Safe checkpoints: atomic writes, loads that never unpickle code, foreign state dicts.

A checkpoint is a dict of tensors and plain Python values saved with `torch.save` and read
back with `torch.load(weights_only=True)`, which refuses arbitrary objects. Weights alone can
also be exported as safetensors.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path

import torch

from .errors import DualatError


def atomic_save(obj, path: str | Path) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over `path`.

    A kill at any moment leaves either the previous file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if str(path).endswith(".safetensors"):
                from safetensors.torch import save
                fh.write(save({k: v.detach().contiguous().cpu() for k, v in obj.items()}))
            else:
                torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def safe_load(path: str | Path, map_location="cpu") -> dict:
    """Load a .pt/.pth/.safetensors file without running any code stored in it."""
    path = Path(path)
    if not path.is_file():
        raise DualatError(f"checkpoint {path} not found; give the path of a .pt, .pth or .safetensors file or a run directory")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device=str(map_location))
        except Exception as exc:  # safetensors raises its own error types
            raise DualatError(f"checkpoint {path} is not a readable safetensors file ({exc})") from None
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
        raise DualatError(f"checkpoint {path} holds objects other than tensors and plain values and was refused "
                          f"(loading it could run code): {first[:160]}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DualatError(f"checkpoint {path} is truncated or not a PyTorch file ({first[:160]})") from None


def file_hash(path: str | Path, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


_WRAPPERS = ("model", "state_dict", "model_state_dict", "ema", "ema_model", "model_ema", "net")
_PREFIXES = ("module.", "_orig_mod.", "model.", "net.", "ema.", "ema_model.", "base_model.")


def extract_state_dict(obj: dict, prefer_ema: bool = True) -> dict:
    """Find the weights inside a foreign checkpoint dict (raw, {'model': ...}, {'ema': ...})."""
    if not isinstance(obj, dict):
        raise DualatError("checkpoint does not hold a state dict")
    keys = ("ema", "ema_model", "model_ema") + _WRAPPERS if prefer_ema else _WRAPPERS
    for key in keys:
        if isinstance(obj.get(key), dict) and any(torch.is_tensor(v) for v in obj[key].values()):
            return obj[key]
    if any(torch.is_tensor(v) for v in obj.values()):
        return {k: v for k, v in obj.items() if torch.is_tensor(v)}
    raise DualatError("checkpoint holds no tensors under any known key (model, state_dict, ema, ...)")


def load_weights(model: torch.nn.Module, state: dict, strict: bool = False) -> dict:
    """Load `state` into `model`, stripping wrapper prefixes (`module.`, EMA, `net.`) as needed.

    Returns a report {'missing': [...], 'unexpected': [...], 'loaded': n}. With strict=True a
    missing parameter is an error.
    """
    target = model.state_dict()
    best = None
    for candidate in _prefix_variants(state, target):
        matched = sum(1 for k in candidate if k in target)
        if best is None or matched > best[0]:
            best = (matched, candidate)
    _, mapped = best
    usable = {k: v for k, v in mapped.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    bad_shape = sorted(k for k in mapped if k in target and k not in usable)
    missing = sorted(k for k in target if k not in usable)
    unexpected = sorted(k for k in mapped if k not in target) + bad_shape
    if not usable:
        raise DualatError(f"checkpoint weights do not fit this model: none of its {len(mapped)} keys match "
                          f"(e.g. {next(iter(mapped), '-')} vs {next(iter(target), '-')}); check model.name")
    if strict and missing:
        raise DualatError(f"checkpoint is missing {len(missing)} weights of this model (e.g. {missing[0]})")
    model.load_state_dict(usable, strict=False)
    return {"loaded": len(usable), "missing": missing, "unexpected": unexpected}


def _prefix_variants(state: dict, target: dict):
    yield state
    for pre in _PREFIXES:
        if any(k.startswith(pre) for k in state):
            yield {k[len(pre):] if k.startswith(pre) else k: v for k, v in state.items()}
    # our Classifier keeps the backbone under `net.`: foreign backbone-only dicts need it added
    if any(k.startswith("net.") for k in target):
        stripped = state
        for pre in ("module.", "model.", "_orig_mod."):
            stripped = {k[len(pre):] if k.startswith(pre) else k: v for k, v in stripped.items()}
        yield {("net." + k if not k.startswith("net.") else k): v for k, v in stripped.items()}
