"""Config files (TOML, or JSON where allowed) into nested dataclasses, checked field by field.

One loader for every config in the project (training, data, post-training): errors name the dotted
field (`optim.lr: expected float, got 'x'`), unknown keys are refused with the known ones listed,
and each caller chooses its error class and message prefix through `error`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import tomllib

from ..errors import GemmaForgeError

ErrorFactory = Callable[[str], Exception]


def read_table(path: str | Path, error: ErrorFactory, formats: tuple[str, ...] = (".toml",)) -> dict[str, Any]:
    """The top-level table of a `.toml` (or, if allowed, `.json`) file."""
    p = Path(path)
    if p.suffix not in formats:
        raise error(f"{p}: expected a {' or '.join(formats)} file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise error(f"cannot read config {p}: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8")) if p.suffix == ".toml" else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise error(f"config {p} is not valid {p.suffix[1:].upper()}: {e}") from None
    if not isinstance(data, dict):
        raise error(f"config {p}: expected a table at the top level")
    return data


def build(cls: type, data: Any, where: str, error: ErrorFactory,
          builders: dict[type, Callable[[Any, str], Any]] | None = None) -> Any:
    """Instantiate dataclass `cls` from `data`, converting and checking each field's type.

    Fields whose names start with "_" are not settable. A field with metadata `extras=True` (a
    dict) collects every key the dataclass does not know. `builders` construct chosen types
    themselves (a filter chosen by its `name` key, say).
    """
    builders = builders or {}
    if cls in builders:
        return builders[cls](data, where)
    if not isinstance(data, dict):
        raise error(f"{where or 'top level'}: expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    extras = next((f.name for f in fields.values() if f.metadata.get("extras")), None)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = _join(where, key)
        if key in fields and key != extras:
            kwargs[key] = convert(value, hints[key], name, error, builders)
        elif key == extras:  # as `dataclasses.asdict` writes it
            kwargs.setdefault(extras, {}).update(convert(value, hints[key], name, error, builders))
        elif extras:
            kwargs.setdefault(extras, {})[key] = value
        else:
            raise error(f"{name}: unknown field; known: {', '.join(sorted(fields))}")
    for f in fields.values():
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise error(f"{_join(where, f.name)}: required field missing")
    try:
        return cls(**kwargs)
    except GemmaForgeError:
        raise  # the dataclass's own check, already worded for the user
    except (TypeError, ValueError) as e:
        raise error(f"{where or 'top level'}: {e}") from None


def convert(value: Any, tp: Any, where: str, error: ErrorFactory,
            builders: dict[type, Callable[[Any, str], Any]] | None = None) -> Any:
    """`value` as type `tp` (dataclasses, `X | None`, Literal, list, dict, bool/int/float/str, Any)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where, error, builders)
    if origin in (typing.Union, types.UnionType):  # TOML has no null: None only from JSON or code
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return convert(value, inner, where, error, builders)
    if origin is Literal:
        if value not in args:
            raise error(f"{where}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise error(f"{where}: expected a list, got {value!r}")
        return [convert(v, args[0], f"{where}[{i}]", error, builders) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"{where}: expected a table, got {value!r}")
        return {str(k): convert(v, args[1], _join(where, str(k)), error, builders) for k, v in value.items()}
    if tp is Any:
        return value
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise error(f"{where}: unsupported option type {tp}")
    if not ok:
        raise error(f"{where}: expected {tp.__name__}, got {value!r}")
    return float(value) if tp is float else value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
