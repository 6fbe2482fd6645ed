"""Safe checkpoints: atomic writes, loads that never unpickle code, foreign state dicts.

A checkpoint is a dict of tensors and plain Python values saved with `torch.save` and read
back with `torch.load(weights_only=True)`, which refuses arbitrary objects. Weights alone can
also be exported as safetensors.
"""
from __future__ import annotations

import hashlib
import pickle
import re
import warnings
from pathlib import Path

import torch

from .atomic import atomic_write
from .errors import DualatError


def atomic_save(obj, path: str | Path) -> Path:
    """Write `obj` atomically (atomic.py): a kill at any moment leaves either the previous file or
    the new one, never half of one. `obj` is a dict for torch.save (or, for a .safetensors path, a
    dict of tensors), or bytes."""
    def write(fh) -> None:
        if isinstance(obj, bytes):
            fh.write(obj)
        elif str(path).endswith(".safetensors"):
            from safetensors.torch import save
            fh.write(save({k: v.detach().contiguous().cpu() for k, v in obj.items()}))
        else:
            torch.save(obj, fh)
    return atomic_write(path, write)


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
            raise DualatError(f"checkpoint {path} is not a readable safetensors file "
                              f"({_first_sentence(str(exc))})") from None
    head = _head(path)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # neither torch.save's zip nor a binary pickle
        raise DualatError(f"checkpoint {path} is not a PyTorch file ({_describe(head)}); give a .pt / .pth "
                          "file that torch.save or `dualat train` wrote, a .safetensors file or a run directory")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols; our error line says enough
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files; none of them ran any code
        text = str(exc)
        if isinstance(exc, pickle.UnpicklingError) and ("GLOBAL" in text or "Weights only load failed" in text):
            raise DualatError(_refusal(path, text)) from None
        raise DualatError(f"checkpoint {path} is truncated or not a PyTorch file "
                          f"({_first_sentence(text) or type(exc).__name__})") from None


def _head(path: Path, n: int = 64) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _describe(head: bytes) -> str:
    """What the first bytes of a file look like: empty, text (quoted) or binary."""
    if not head:
        return "it is empty"
    try:
        text = head.decode("utf-8").splitlines()[0][:40]
    except (UnicodeDecodeError, IndexError):
        return "its first bytes are neither a zip archive nor a pickle"
    return f"it starts with the text {text!r}"


def _first_sentence(text: str, limit: int = 160) -> str:
    """One line of an exception's text: whitespace folded, cut after its first sentence."""
    text = " ".join(text.split())
    end = text.find(". ")
    return (text[:end] if 0 < end < limit else text[:limit]).rstrip(".")


def _refusal(path: Path, message: str) -> str:
    """One line for a file that needs unpickling of something other than tensors and plain values."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    what = f"it asks to unpickle {found.group(1)}" if found else "it holds objects other than tensors and plain values"
    return (f"checkpoint {path} was refused: {what}, and loading that could run code. If it is a whole pickled "
            f"model from a source you trust, convert it once where its code is importable: "
            f"torch.save(torch.load('{path}', weights_only=False).state_dict(), 'weights.pt'), then pass weights.pt")


def file_hash(path: str | Path, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


# Where foreign checkpoints keep their weights, EMA copies first (tried in this order):
#   ours                    {'model': ..., 'ema': {'model': ...}} / stage1.pt / best_*.pt
#   DAT authors (rebm)      model_bestfid.pth = raw state dict of an nn.DataParallel model ('module.' keys);
#                           its EMA (an AveragedModel) adds 'module.module.' and an 'n_averaged' counter;
#                           training_state_latest.pth = {'model_state_dict', 'ema_state_dict',
#                                                        'optimizer_state_dict', ...}
#   JEM (and JEM++)         {'model_state_dict': {'f.<backbone>', 'class_output.<head>', 'energy_output.<...>'},
#                            'replay_buffer': tensor}
#   RobustBench             raw state dict or {'state_dict': ...}, often with 'module.'
#   MadryLab robustness     {'model': {'module.model.<...>', 'module.attacker.model.<...>', 'module.normalizer.<...>'}}
_EMA_KEYS = ("ema", "ema_model", "model_ema", "ema_state_dict", "state_dict_ema")
_WRAPPERS = ("model", "state_dict", "model_state_dict", "net")
_PREFIXES = ("module.", "_orig_mod.", "model.", "net.", "ema.", "ema_model.", "base_model.", "f.")
_COUNTERS = ("n_averaged",)  # bookkeeping tensors of averaging wrappers, not weights


def extract_state_dict(obj: dict, prefer_ema: bool = True) -> dict:
    """Find the weights inside a foreign checkpoint dict (raw, {'model': ...}, {'ema': ...}, JEM, ...).

    A wrapper key wins over loose tensors beside it, so a JEM `replay_buffer` is never taken
    for weights; with prefer_ema an EMA copy wins over the raw model.
    """
    if not isinstance(obj, dict):
        raise DualatError(f"checkpoint holds a {type(obj).__name__}, not a dict of weights; "
                          "save the model's state_dict() instead")
    keys = _EMA_KEYS + _WRAPPERS if prefer_ema else _WRAPPERS + _EMA_KEYS
    for key in keys:
        inner = obj.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("model"), dict) and key in _EMA_KEYS:
            inner = inner["model"]  # our own EMA state: {'model': ..., 'updates': n}
        if isinstance(inner, dict) and any(torch.is_tensor(v) for v in inner.values()):
            return {k: v for k, v in inner.items() if torch.is_tensor(v)}
    if any(torch.is_tensor(v) for v in obj.values()):
        return {k: v for k, v in obj.items() if torch.is_tensor(v)}
    raise DualatError("checkpoint holds no tensors under any known key (model, state_dict, model_state_dict, ema, ...)")


def load_weights(model: torch.nn.Module, state: dict, strict: bool = False) -> dict:
    """Load `state` into `model`, stripping wrapper prefixes (`module.`, EMA, `net.`, JEM's `f.`).

    Returns a report {'missing': [...], 'unexpected': [...], 'loaded': n}: `missing` are this
    model's tensors the file did not provide (left as they were), `unexpected` the file's tensors
    this model has no place for (or whose shape differs). With strict=True a missing tensor is an error.
    """
    target = model.state_dict()
    state = {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in _COUNTERS}
    best = None
    for candidate in _prefix_variants(state, target):
        matched = sum(1 for k, v in candidate.items() if k in target and tuple(v.shape) == tuple(target[k].shape))
        if best is None or matched > best[0]:
            best = (matched, candidate)
    _, mapped = best
    usable = {k: v for k, v in mapped.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    bad_shape = sorted(k for k in mapped if k in target and k not in usable)
    missing = sorted(k for k in target if k not in usable)
    renamed = _renaming(state, mapped, usable)
    unexpected = sorted(k for k in mapped if k not in target) + bad_shape
    if not usable:
        raise DualatError(f"checkpoint weights do not fit this model: none of its {len(mapped)} tensors match in "
                          f"name and shape (e.g. {next(iter(mapped), '-')} vs {next(iter(target), '-')}); "
                          "check model.name")
    if strict and missing:
        raise DualatError(f"checkpoint is missing {len(missing)} weights of this model (e.g. {missing[0]})")
    model.load_state_dict(usable, strict=False)
    return {"loaded": len(usable), "missing": missing, "unexpected": unexpected, "renamed": renamed}


def _renaming(state: dict, mapped: dict, usable: dict) -> dict:
    """{'file prefix' -> 'model prefix'} of the renaming load_weights chose, e.g. {'module.': 'net.'}:
    the leading dotted components that differ between a file key and the name it was loaded as."""
    out = {}
    pairs = zip(state, mapped) if len(state) == len(mapped) else ((a, _strip(a)) for a in state if _strip(a) in mapped)
    for a, b in pairs:  # the variants keep the file's key order
        if a != b and b in usable:
            pa, pb = a.split("."), b.split(".")
            n = 0
            while n < min(len(pa), len(pb)) and pa[-1 - n] == pb[-1 - n]:
                n += 1
            head_a, head_b = pa[: len(pa) - n], pb[: len(pb) - n]
            out["".join(c + "." for c in head_a)] = "".join(c + "." for c in head_b)
    return out


def _strip(key: str) -> str:
    """Remove every leading wrapper prefix: 'module.module.net.x' -> 'x'."""
    changed = True
    while changed:
        changed = False
        for pre in _PREFIXES:
            if key.startswith(pre) and len(key) > len(pre):
                key, changed = key[len(pre):], True
    return key


def _prefix_variants(state: dict, target: dict):
    """Candidate renamings of `state`; load_weights keeps the one matching most of `target`."""
    yield state
    for pre in _PREFIXES:  # one wrapper removed (keeps e.g. a backbone's own `model.` names)
        if any(k.startswith(pre) for k in state):
            yield {k[len(pre):] if k.startswith(pre) else k: v for k, v in state.items()}
    stripped = _with_head(_rename(state, _strip), target)
    yield stripped
    # our Classifier keeps the backbone under `net.`: foreign backbone-only dicts need it added
    if any(k.startswith("net.") for k in target):
        yield {("net." + k if "net." + k in target else k): v for k, v in stripped.items()}


def _rename(state: dict, fn) -> dict:
    out = {}
    for k, v in state.items():
        out.setdefault(fn(k), v)  # on a clash (e.g. 'module.x' and 'x') the first one stays
    return out


def _with_head(state: dict, target: dict) -> dict:
    """JEM keeps the classifier head as `class_output.*`: give it the name of this model's head
    (the target's last 2-D weight of the same shape) when the backbone has none of its own."""
    if "class_output.weight" not in state:
        return state
    w = state["class_output.weight"]
    heads = [k for k, v in target.items()
             if k.endswith(".weight") and v.dim() == 2 and tuple(v.shape) == tuple(w.shape)]
    if not heads:
        return state
    head = heads[-1][: -len(".weight")]
    head = head[len("net."):] if head.startswith("net.") else head
    if any(_strip(k).startswith(head + ".") for k in state if not k.startswith("class_output.")):
        return state
    return {(head + k[len("class_output"):] if k.startswith("class_output.") else k): v for k, v in state.items()}
