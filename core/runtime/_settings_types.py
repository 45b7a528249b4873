"""Settings values: conversion to a field's annotated type, and TOML rendering.

The loader (:mod:`fedzero.core.runtime._settings`) reads raw values from files, the
environment and flags; this module turns them into the types a config
dataclass declares (bool, int, float, str, Path, Literal, X | None, list, dict)
and writes effective configurations back as TOML.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SCALARS = (bool, int, float, str, Path)


class _MismatchError(Exception):
    """A value does not fit a type; the caller adds key and source."""

    def __init__(self, expected: str, got: object) -> None:
        super().__init__(expected)
        self.expected = expected
        self.got = got


def _field_types(cls: type[Any]) -> dict[str, Any]:
    """Field name → resolved annotation, checked to be supported."""
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise TypeError(f"load_config needs a dataclass type, got {cls!r}")
    hints = typing.get_type_hints(cls)
    out = {}
    for field in dataclasses.fields(cls):
        if field.init:
            tp = hints[field.name]
            if not _supported(tp):
                raise TypeError(f"{cls.__name__}.{field.name}: unsupported annotation {tp!r}")
            out[field.name] = tp
    return out


def _members(tp: Any) -> tuple[list[Any], bool]:
    """For a union: its non-None members and whether None is one; else ``[tp], False``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        return [a for a in args if a is not type(None)], type(None) in args
    return [tp], False


def _supported(tp: Any, *, inner: bool = False) -> bool:
    members, _ = _members(tp)
    if len(members) > 1 or inner:  # unions and container items: scalars only
        return all(m in _SCALARS or _is_literal(m) for m in members)
    (tp,) = members
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return len(args) == 1 and _supported(args[0], inner=True)
    if origin is dict:
        return len(args) == 2 and args[0] is str and _supported(args[1], inner=True)
    return tp in _SCALARS or _is_literal(tp)


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal and all(isinstance(a, str) for a in typing.get_args(tp))


def _expected(tp: Any) -> str:
    """What a value of ``tp`` looks like, for error messages."""
    members, _ = _members(tp)
    if len(members) > 1:
        return " or ".join(_expected(m).removeprefix("expected ") for m in members)
    (tp,) = members
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        plural = {
            str: "strings",
            int: "integers",
            float: "numbers",
            bool: "booleans",
            Path: "paths",
        }
        return f"expected a list of {plural.get(args[0], 'values')}"
    if origin is dict:
        return "expected a table of key = value (k=v,k2=v2 in the environment)"
    if origin is Literal:
        return "expected one of " + ", ".join(repr(a) for a in args)
    return {
        bool: "expected true or false",
        int: "expected an integer",
        float: "expected a number",
        str: "expected a string",
        Path: "expected a path",
    }[tp]


def _convert(value: object, tp: Any, *, text: bool) -> object:
    """Convert ``value`` to ``tp``; ``text`` when it is a string to parse (env)."""
    members, optional = _members(tp)
    if optional and (value is None or (isinstance(value, str) and not value.strip())):
        return None
    if len(members) > 1:
        return _convert_union(value, members, text=text)
    (tp,) = members
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is dict:
        return _convert_dict(value, args[1], tp)
    if origin is list:
        if isinstance(value, str) and text:
            value = [part.strip() for part in value.split(",") if part.strip()]
        elif not isinstance(value, list | tuple):
            raise _MismatchError(_expected(tp), value)
        return [_convert(item, args[0], text=text) for item in value]
    return _convert_scalar(value, tp, text=text)


def _convert_union(value: object, members: list[Any], *, text: bool) -> object:
    if text and isinstance(value, str):
        value = scalar_from_text(value)
    for member in sorted(members, key=lambda m: type(value) is not m):  # exact type first
        try:
            return _convert_scalar(value, member, text=False)
        except _MismatchError:
            continue
    raise _MismatchError(
        "expected " + " or ".join(_expected(m).removeprefix("expected ") for m in members), value
    )


def _convert_dict(value: object, item_type: Any, tp: Any) -> dict[str, object]:
    if isinstance(value, Mapping):
        pairs: list[tuple[object, object, bool]] = [(k, v, False) for k, v in value.items()]
    elif isinstance(value, str) or (
        isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    ):
        items = [value] if isinstance(value, str) else list(value)
        pairs = []
        for item in items:
            for part in filter(None, (p.strip() for p in str(item).split(","))):
                name, sep, text = part.partition("=")
                if not sep or not name.strip():
                    raise _MismatchError(_expected(tp) + f"; {part!r} is not key=value", value)
                pairs.append((name.strip(), text.strip(), True))
    else:
        raise _MismatchError(_expected(tp), value)
    out: dict[str, object] = {}
    for key, raw, is_text in pairs:
        if not isinstance(key, str):
            raise _MismatchError(_expected(tp), value)
        try:
            out[key] = _convert(raw, item_type, text=is_text)
        except _MismatchError as bad:
            raise _MismatchError(f"item {key!r}: {bad.expected}", bad.got) from None
    return out


def scalar_from_text(text: str) -> object:
    """``"1"`` → 1, ``"0.5"`` → 0.5, ``"true"`` → True, ``'"x"'`` and ``"x"`` → ``"x"``."""
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()
    return value if isinstance(value, bool | int | float | str) else text.strip()


def _convert_scalar(value: object, tp: Any, *, text: bool) -> object:
    expected = _expected(tp)
    if _is_literal(tp):
        if text and isinstance(value, str):
            value = value.strip()
        if value in typing.get_args(tp):
            return value
        raise _MismatchError(expected, value)
    if text and isinstance(value, str):
        raw = value.strip()
        if tp is bool:
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise _MismatchError(expected, value)
        if tp is int:
            try:
                return int(raw)
            except ValueError:
                raise _MismatchError(expected, value) from None
        if tp is float:
            try:
                value = float(raw)
            except ValueError:
                raise _MismatchError(expected, value) from None
        elif tp is str:
            return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _MismatchError("expected a finite number", value)
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    if tp is Path and isinstance(value, str | os.PathLike):
        path = os.fspath(value)
        if isinstance(path, str) and path.strip():
            return Path(path).expanduser()
    raise _MismatchError(expected, value)


# --- TOML output ---------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: object) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # 0.5, 1e-05, inf, nan: all valid TOML
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Path):
        return _toml_string(str(value))
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
