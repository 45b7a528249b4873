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
import math
import os
import re
import threading
import tomllib
import types
import typing
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from fedzero.core._errors import ConfigurationError

T = TypeVar("T")
SourceKind = Literal["default", "file", "env", "flag", "code"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SCALARS = (bool, int, float, str, Path)


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
        value = _scalar_from_text(value)
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


def _scalar_from_text(text: str) -> object:
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
