"""Strict JSON parsing of untrusted headers."""

from __future__ import annotations

import json
from typing import Any

from .._errors import DeserializationError


def _reject_duplicates(what: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise DeserializationError(f"{what}: duplicate key {key!r}")
            out[key] = value
        return out

    return hook


def _reject_constant(what: str) -> Any:
    def hook(name: str) -> Any:
        raise DeserializationError(f"{what}: {name} is not allowed here")

    return hook


def loads_strict(data: bytes | memoryview, *, what: str, allow_nan: bool = False) -> Any:
    """Parse UTF-8 JSON from an untrusted peer.

    Duplicate object keys are an error (a parser that keeps the last one would
    let two readers disagree about the same bytes).

    Args:
        data: the bytes to parse.
        what: names the input in error messages, e.g. ``"frame 0"``.
        allow_nan: accept the ``NaN``/``Infinity``/``-Infinity`` extension tokens.

    Raises:
        DeserializationError: the bytes are not UTF-8, not JSON, too deeply
            nested, or contain duplicate keys.
    """
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DeserializationError(
            f"{what}: not valid UTF-8 ({exc.reason} at {exc.start})"
        ) from None
    kwargs: dict[str, Any] = {"object_pairs_hook": _reject_duplicates(what)}
    if not allow_nan:
        kwargs["parse_constant"] = _reject_constant(what)
    try:
        return json.loads(text, **kwargs)
    except DeserializationError:
        raise
    except json.JSONDecodeError as exc:
        raise DeserializationError(f"{what}: not valid JSON ({exc.msg} at {exc.pos})") from None
    except RecursionError:
        raise DeserializationError(f"{what}: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal with too many digits
        raise DeserializationError(f"{what}: {exc}") from None
