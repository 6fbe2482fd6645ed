"""Settings dataclasses from plain mappings: type coercion, '8/255' numbers, partial sections laid
over their defaults, unknown keys named with a close match, and dotted `key=value` overrides.
Knows no particular config: config.py builds its Config with it."""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing

import yaml

from .errors import DualatError


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _base_type(tp):
    """(allowed python types, is_optional) of an annotation like `int | None`."""
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        return _base_type(inner[0])[0], True
    if origin is not None:
        return origin, False
    return tp, False


def _coerce(key: str, value, tp):
    if set(typing.get_args(tp)) == {bool, str}:  # a switch with named settings (amp: true | false | auto)
        if not isinstance(value, (bool, str)):
            raise DualatError(f"config key {key} must be true, false or auto, got {value!r}")
        return value
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


def build(cls, values: dict, prefix: str = ""):
    """An instance of dataclass `cls` from `values`, each key coerced to its field's type."""
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
    deep_update(merged, partial)
    return build(type(default), merged, prefix)


def deep_update(base: dict, new: dict) -> None:
    """Lay `new` over `base` in place, section by section (a model's kwargs are replaced whole)."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "kwargs":
            deep_update(base[key], value)
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
