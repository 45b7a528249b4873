"""Where settings come from: a TOML file, the environment, the flags given.

Each reader returns field name -> (raw value, :class:`Origin`); unknown keys are
refused with a hint at the closest known one. :mod:`._settings` converts and
layers what they return.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from .._errors import ConfigurationError

SourceKind = Literal["default", "file", "env", "flag", "code"]
Raw = dict[str, tuple[object, "Origin"]]
"""Field name -> (value as read, where it came from)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Origin:
    """Where one setting's value came from.

    Attributes:
        kind: ``"default"``, ``"file"``, ``"env"``, ``"flag"``, or ``"code"``
            (the instance was not built by :func:`load_config` and the value
            differs from the default).
        where: the file path, environment variable or flag; empty otherwise.
    """

    kind: SourceKind
    where: str = ""

    def __str__(self) -> str:
        """``"default"``, or ``"from <where>"`` (as used in error messages)."""
        return f"from {self.where}" if self.where else self.kind

    def describe(self) -> str:
        """``"default"``, ``"file /etc/fedzero/link.toml"``, ``"env FEDZERO_..."``..."""
        return f"{self.kind} {self.where}" if self.where else self.kind


def env_var_name(section: str, name: str, prefix: str = "FEDZERO") -> str:
    """The environment variable for a setting: ``FEDZERO_LINK_HEARTBEAT_TIMEOUT``.

    Args:
        section: ``"link"`` or ``"node"``.
        name: the field name (``-`` or ``_``).
        prefix: the variable prefix.
    """
    return f"{prefix}_{section}_{name}".replace("-", "_").upper()


def read_file(path: Path, section: str, types_: Mapping[str, Any]) -> Raw:
    """The ``[section]`` table of a TOML file, keyed by field name."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigurationError(f"config file {path}: not found") from None
    except OSError as exc:
        raise ConfigurationError(f"config file {path}: cannot read it: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"config file {path}: invalid TOML: {exc}") from None
    origin = Origin("file", str(path))
    for key, value in data.items():
        if key != section and not isinstance(value, dict):
            raise ConfigurationError(
                f"config file {path}: key {key!r} is outside the [{section}] table"
            )
    if data and section not in data:
        raise ConfigurationError(f"config file {path}: no [{section}] table")
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"config file {path}: {section!r} must be a table [{section}]")
    out: Raw = {}
    spelled: dict[str, str] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in types_:
            raise ConfigurationError(
                f"config file {path}: unknown key {key!r} in [{section}]"
                f"{_hint(name, types_, dashes=True)}"
            )
        if name in spelled:
            raise ConfigurationError(
                f"config file {path}: [{section}] sets {name!r} twice "
                f"(as {spelled[name]!r} and {key!r})"
            )
        spelled[name] = key
        out[name] = (value, origin)
    return out


def read_env(env: Mapping[str, str], section: str, types_: Mapping[str, Any], prefix: str) -> Raw:
    """Every ``PREFIX_SECTION_*`` variable, keyed by field name."""
    head = env_var_name(section, "", prefix)
    out: Raw = {}
    for var in sorted(env):
        if not var.startswith(head):
            continue
        name = var[len(head) :].lower()
        origin = Origin("env", var)
        if name not in types_:
            raise ConfigurationError(
                f"{section}: unknown setting {name!r} ({origin})"
                f"{_hint(name, types_, var=(section, prefix))}"
            )
        out[name] = (env[var], origin)
    return out


def read_overrides(overrides: Mapping[str, object], section: str, types_: Mapping[str, Any]) -> Raw:
    """The flags the user passed (None: not given), keyed by field name."""
    out: Raw = {}
    for key, raw in overrides.items():
        if raw is None:
            continue
        name = key.replace("-", "_")
        origin = Origin("flag", "--" + name.replace("_", "-"))
        if name not in types_:
            raise ConfigurationError(
                f"{section}: unknown setting {key!r} ({origin}){_hint(name, types_)}"
            )
        out[name] = (raw, origin)
    return out


def _hint(
    name: str,
    types_: Mapping[str, Any],
    *,
    dashes: bool = False,
    var: tuple[str, str] | None = None,
) -> str:
    """``"; did you mean ...?"`` for a misspelt key, or nothing."""
    close = difflib.get_close_matches(name, list(types_), n=1)
    if not close:
        return ""
    best = close[0]
    if var is not None:
        best = env_var_name(var[0], best, var[1])
    elif dashes:
        best = best.replace("_", "-")
    return f"; did you mean {best!r}?"
