"""Typed configuration: dataclasses filled from TOML files and flags.

Rules (the same for every part):
  * a config file sets defaults, command-line flags override them;
  * an unknown key is an error that names the key and the known ones;
  * a value of the wrong type is an error that names the key;
  * the resolved config is saved with each run (`to_dict` -> JSON).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from kaogen.errors import KaogenError

T = TypeVar("T")


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise KaogenError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise KaogenError(f"config file {path} is not valid TOML: {e}") from None


def _check_value(where: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise KaogenError(f"config key '{where}' must be a table")
        return from_dict(tp, value, prefix=f"{where}.")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(where, a, value)
            except KaogenError:
                pass
        raise KaogenError(f"config key '{where}' has a value of the wrong type: {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise KaogenError(f"config key '{where}' must be one of {list(typing.get_args(tp))}, not {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise KaogenError(f"config key '{where}' must be a list")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        vals = [_check_value(f"{where}[{i}]", item, v) for i, v in enumerate(value)]
        return tuple(vals) if origin is tuple else vals
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if type(value) is not tp:
            raise KaogenError(f"config key '{where}' must be {tp.__name__}, not {type(value).__name__} ({value!r})")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from `data`, checking keys and types (nested dataclasses allowed)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise KaogenError(
            f"unknown config key '{prefix}{unknown[0]}' (known: {', '.join(sorted(names))})"
        )
    kwargs = {k: _check_value(prefix + k, hints[k], v) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise KaogenError(f"invalid config: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def load_config(cls: type[T], path: str | Path | None = None, **overrides: Any) -> T:
    """Defaults of `cls` <- file `path` (TOML) <- `overrides` whose value is not None."""
    data: dict[str, Any] = read_toml(path) if path else {}
    for k, v in overrides.items():
        if v is not None:
            data[k] = v
    return from_dict(cls, data)
