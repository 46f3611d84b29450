"""Configs are dataclasses loaded from YAML, overridden by ``--set a.b=value``, saved beside outputs.

Precedence (lowest first): dataclass defaults < ``--config FILE`` < explicit CLI options < ``--set``.
Values given with ``--set`` are parsed as YAML scalars (``--set steps=30``, ``--set seed=null``,
``--set fps=16.0``, ``--set lora=[a,b]``) and then converted to the field's declared type.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ipvgkit.errors import ConfigError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain (YAML-safe) dict of a config dataclass; paths become strings."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Enum):
            return v.value
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        return v

    return conv(cfg)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` converted to the annotation ``tp`` (``ConfigError`` naming ``key`` when it cannot be)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(tp), key)
    if origin is typing.Literal:
        args = typing.get_args(tp)
        if value not in args:
            raise ConfigError(f"config key {key!r}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            known = ", ".join(repr(m.value) for m in tp)
            raise ConfigError(f"config key {key!r}: {value!r} is not one of {known}") from None
    if dataclasses.is_dataclass(tp) or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=key + ".") if origin is not dict else dict(value)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        inner = typing.get_args(tp)[0] if typing.get_args(tp) else Any
        items = [_coerce(v, inner, key) for v in value]
        return items if origin is list else tuple(items)
    scalar = _SCALARS.get(tp)
    return value if scalar is None else scalar(value, key)


def _coerce_union(value: Any, args: tuple, key: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for a in args:
        if a is type(None):
            continue
        try:
            return _coerce(value, a, key)
        except ConfigError as e:  # try the next member of the union
            errors.append(str(e))
    raise ConfigError(f"config key {key!r}: cannot use {value!r} ({'; '.join(errors)})")


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _to_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise ConfigError(f"config key {key!r}: expected true/false, got {value!r}")


def _to_int(value: Any, key: str) -> int:
    bad = ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, str, float)):
        raise bad
    try:
        f = float(value)
    except ValueError:
        raise bad from None
    if f != int(f):
        raise bad
    return int(f)


def _to_float(value: Any, key: str) -> float:
    if not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    raise ConfigError(f"config key {key!r}: expected a number, got {value!r}")


def _to_str(value: Any, key: str) -> str:
    if isinstance(value, (dict, list)):
        raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
    return str(value)


def _to_path(value: Any, key: str) -> Path:
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"config key {key!r}: expected a path, got {value!r}")
    return Path(os.path.expanduser(str(value)))


# the scalar annotations a config field may have (Any and anything else: the value as given)
_SCALARS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str, Path: _to_path}


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build ``cls`` from a mapping, converting types and rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r} (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"config {cls.__name__}: {e}") from None
    except ValueError as e:  # __post_init__ validation
        raise ConfigError(str(e)) from None


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML scalars)."""
    result: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set {item!r}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p!r} is set both as a value and as a section")
        node[parts[-1]] = value
    return result


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return data


def resolve(
    cls: type[T],
    config_file: Path | None = None,
    cli: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
) -> T:
    """Defaults < config file < CLI options (those not None) < ``--set`` overrides."""
    data: dict[str, Any] = {}
    if config_file is not None:
        data = read_yaml(config_file)
    if cli:
        data = deep_merge(data, {k: v for k, v in cli.items() if v is not None})
    data = deep_merge(data, parse_overrides(overrides))
    return from_dict(cls, data)


def save(cfg: Any, path: Path) -> Path:
    """Write the resolved config as YAML, atomically."""
    from ipvgkit.fsutil import atomic_write_text

    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
    return atomic_write_text(Path(path), text)
