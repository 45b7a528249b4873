"""Layered configuration: build a daemon's config dataclass from four sources.

In increasing precedence:

1. the dataclass's defaults;
2. a TOML file (``--config PATH``), keys under a table named after the
   section, spelled with ``-`` or ``_``::

       [link]
       heartbeat-timeout = 5.0
       allowed-keys-dir = "/etc/fedzero/allowed_keys"

3. environment variables ``FEDZERO_<SECTION>_<KEY>``, e.g.
   ``FEDZERO_LINK_HEARTBEAT_TIMEOUT=5`` (``FEDZERO_NODE_NODE_CONFIG=a=1,b=x``);
4. explicit overrides: the CLI flags the user actually passed.

Values are converted to each field's annotated type; every error is a
:class:`~fedzero.core.ConfigurationError` naming the key and where the value
came from, e.g. ``link.heartbeat_timeout: expected a number, got 'soon' (from
FEDZERO_LINK_HEARTBEAT_TIMEOUT)``. The supported annotations are ``bool``,
``int``, ``float``, ``str``, :class:`pathlib.Path`, ``Literal[...]`` of
strings, ``X | None`` of those, ``list[X]`` and ``dict[str, X]`` with ``X`` a
scalar or a union of scalars (e.g. ``dict[str, str | int | float | bool]``).

In the environment, booleans are ``true/false``, ``yes/no``, ``on/off`` or
``1/0``; lists are ``a,b,c``; dicts are ``k=v,k2=v2`` with TOML scalar values
(``lr=0.1`` is a float, ``name=x`` a string). An empty value (in the
environment or, as ``""``, in the file) sets an ``X | None`` field to None.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import threading
import tomllib
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from .._errors import ConfigurationError
from ._settings_types import (
    _convert,
    _field_types,
    _MismatchError,
    _toml_key,
    _toml_value,
)

T = TypeVar("T")
SourceKind = Literal["default", "file", "env", "flag", "code"]


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


_DEFAULT = Origin("default")
_CODE = Origin("code")
_ORIGINS_LOCK = threading.Lock()
_ORIGINS: OrderedDict[int, tuple[object, dict[str, Origin]]] = OrderedDict()
_ORIGINS_KEPT = 32


def env_var_name(section: str, name: str, prefix: str = "FEDZERO") -> str:
    """The environment variable for a setting: ``FEDZERO_LINK_HEARTBEAT_TIMEOUT``.

    Args:
        section: ``"link"`` or ``"node"``.
        name: the field name (``-`` or ``_``).
        prefix: the variable prefix.
    """
    return f"{prefix}_{section}_{name}".replace("-", "_").upper()


def load_config(
    cls: type[T],
    section: str,
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    env_prefix: str = "FEDZERO",
) -> T:
    """Build a config dataclass from defaults, a TOML file, the environment and flags.

    Then call the instance's ``validate()`` method if it has one; a
    :class:`ConfigurationError` it raises whose message starts with a field
    name (``"heartbeat_timeout: must ..."``) gets the section and the value's
    source added. Where each value came from is remembered for
    :func:`render_config` and :func:`config_origins`.

    Args:
        cls: a dataclass whose fields have supported annotations (see the
            module docs).
        section: the TOML table and environment infix: ``"link"``, ``"node"``.
        config_file: a TOML file; None reads none.
        environ: the environment; default :data:`os.environ`.
        overrides: field name (``-`` or ``_``) → value, for the flags the user
            actually passed. None values are skipped, so flags can default to
            None to mean "not given". Values may be Python objects (a
            :class:`~pathlib.Path`, a dict) or strings as in the environment.
        env_prefix: prefix of the environment variables.

    Returns:
        The validated instance.

    Raises:
        ConfigurationError: unreadable or invalid TOML, an unknown key (in the
            file, an ``FEDZERO_<SECTION>_*`` variable, or the overrides), a
            value of the wrong type, a missing required setting, or a
            ``validate()`` failure; the message names the key and the source.
        TypeError: ``cls`` is not a dataclass or a field's annotation is not
            supported (a programming error, not a user's).
    """
    types_ = _field_types(cls)
    values: dict[str, tuple[object, Origin, bool]] = {}  # name -> (raw, origin, is_text)
    if config_file is not None:
        for name, (raw, origin) in _read_file(Path(config_file), section, types_).items():
            values[name] = (raw, origin, False)
    env = os.environ if environ is None else environ
    for name, (raw, origin) in _read_env(env, section, types_, env_prefix).items():
        values[name] = (raw, origin, True)
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        name = key.replace("-", "_")
        origin = Origin("flag", "--" + name.replace("_", "-"))
        if name not in types_:
            raise ConfigurationError(
                f"{section}: unknown setting {key!r} ({origin}){_hint(name, types_)}"
            )
        values[name] = (raw, origin, isinstance(raw, str))

    kwargs: dict[str, object] = {}
    origins = dict.fromkeys(types_, _DEFAULT)
    for name, (raw, origin, is_text) in values.items():
        try:
            kwargs[name] = _convert(raw, types_[name], text=is_text)
        except _MismatchError as bad:
            raise ConfigurationError(
                f"{section}.{name}: {bad.expected}, got {bad.got!r} ({origin})"
            ) from None
        origins[name] = origin
    _check_required(cls, section, kwargs, env_prefix)
    instance = cls(**kwargs)
    _validate(instance, section, origins)
    _remember(instance, origins)
    return instance


def config_origins(config: object) -> Mapping[str, Origin]:
    """Where each field of ``config`` came from, if :func:`load_config` built it.

    Args:
        config: an instance returned by :func:`load_config` (the most recent
            few are remembered).

    Returns:
        Field name → :class:`Origin`; empty if ``config`` is not remembered.
    """
    with _ORIGINS_LOCK:
        entry = _ORIGINS.get(id(config))
    if entry is None or entry[0] is not config:
        return {}
    return dict(entry[1])


def render_config(
    config: object, section: str, *, origins: Mapping[str, Origin] | None = None
) -> str:
    """The effective configuration as TOML, each key commented with its source.

    For ``--print-config``. Keys are spelled with ``-``; a None value is
    written as ``""`` (which reads back as None). Feeding the text back to
    :func:`load_config` as the config file rebuilds an equal instance.

    Args:
        config: a config dataclass instance.
        section: the table name (``"link"``, ``"node"``).
        origins: where each value came from; default what :func:`load_config`
            recorded for this instance, else ``default`` for values equal to
            the field's default and ``code`` for the others.

    Returns:
        TOML text ending in a newline.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"render_config needs a dataclass instance, got {config!r}")
    known = dict(origins) if origins is not None else dict(config_origins(config))
    lines = [
        f"# Effective fedzero {section} configuration. Each key is followed by where",
        "# its value came from: default, file, env (environment variable) or flag.",
        f"[{_toml_key(section)}]",
    ]
    for field in dataclasses.fields(config):
        if not field.init:
            continue
        value = getattr(config, field.name)
        origin = known.get(field.name) or (_DEFAULT if _default_of(field) == value else _CODE)
        note = origin.describe() + (" (unset)" if value is None else "")
        lines.append(f"{_toml_key(field.name.replace('_', '-'))} = {_toml_value(value)}  # {note}")
    return "\n".join(lines) + "\n"


def default_state_dir(
    app: str = "fedzero", *, system: bool = False, environ: Mapping[str, str] | None = None
) -> Path:
    """Where a daemon keeps its state when the configuration names no directory.

    In order: ``$STATE_DIRECTORY`` (set by systemd for ``StateDirectory=``,
    the documented way for a service to learn it; the first entry if several),
    ``/var/lib/<app>`` when ``system``, else the user's data directory
    (``$XDG_DATA_HOME/<app>``, by default ``~/.local/share/<app>``).
    The directory is not created.

    Args:
        app: the directory name.
        system: running as a system service.
        environ: the environment; default :data:`os.environ`.
    """
    env = os.environ if environ is None else environ
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state)
    if system:
        return Path("/var/lib") / app
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative paths
        return Path(xdg) / app
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / app


# --- sources -------------------------------------------------------------------------------


def _read_file(
    path: Path, section: str, types_: Mapping[str, Any]
) -> dict[str, tuple[object, Origin]]:
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
    out: dict[str, tuple[object, Origin]] = {}
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


def _read_env(
    env: Mapping[str, str], section: str, types_: Mapping[str, Any], prefix: str
) -> dict[str, tuple[object, Origin]]:
    """Every ``PREFIX_SECTION_*`` variable, keyed by field name."""
    head = env_var_name(section, "", prefix)
    out: dict[str, tuple[object, Origin]] = {}
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


def _check_required(
    cls: type[Any], section: str, kwargs: Mapping[str, object], prefix: str
) -> None:
    for field in dataclasses.fields(cls):
        if not field.init or field.name in kwargs:
            continue
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            key = field.name.replace("_", "-")
            raise ConfigurationError(
                f"{section}.{field.name}: required; set {key} in the [{section}] table of "
                f"the config file, {env_var_name(section, field.name, prefix)}, or --{key}"
            )


def _validate(instance: object, section: str, origins: Mapping[str, Origin]) -> None:
    """Run ``instance.validate()``; name the section and sources in its errors."""
    validate = getattr(instance, "validate", None)
    if not callable(validate):
        return
    try:
        validate()
    except ConfigurationError as exc:
        message = str(exc)
        head, sep, rest = message.partition(":")
        names = [n.strip() for n in head.split(",")]
        if not sep or not all(n in origins for n in names):
            raise
        keys = ", ".join(f"{section}.{n}" for n in names)
        if len(names) == 1:
            where = str(origins[names[0]])
        else:
            where = "; ".join(f"{n} {origins[n]}" for n in names)
        raise ConfigurationError(f"{keys}:{rest} ({where})") from exc


def _remember(instance: object, origins: dict[str, Origin]) -> None:
    with _ORIGINS_LOCK:
        _ORIGINS[id(instance)] = (instance, origins)
        _ORIGINS.move_to_end(id(instance))
        while len(_ORIGINS) > _ORIGINS_KEPT:
            _ORIGINS.popitem(last=False)


def _default_of(field: dataclasses.Field[Any]) -> object:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


# --- types and conversion ------------------------------------------------------------------
