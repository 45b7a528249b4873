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
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from .._errors import ConfigurationError
from ._settings_sources import (
    Origin,
    env_var_name,
    read_env,
    read_file,
    read_overrides,
)
from ._settings_types import (
    _convert,
    _field_types,
    _MismatchError,
    _toml_key,
    _toml_value,
)

T = TypeVar("T")


_DEFAULT = Origin("default")
_CODE = Origin("code")
_ORIGINS_LOCK = threading.Lock()
_ORIGINS: OrderedDict[int, tuple[object, dict[str, Origin]]] = OrderedDict()
_ORIGINS_KEPT = 32


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
    env = os.environ if environ is None else environ
    values = read_file(Path(config_file), section, types_) if config_file is not None else {}
    values.update(read_env(env, section, types_, env_prefix))
    values.update(read_overrides(overrides or {}, section, types_))
    kwargs = _converted(values, section, types_)
    origins = dict.fromkeys(types_, _DEFAULT) | {name: o for name, (_, o) in values.items()}
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


def _converted(
    values: Mapping[str, tuple[object, Origin]], section: str, types_: Mapping[str, Any]
) -> dict[str, object]:
    """Each value converted to its field's type; a ConfigurationError names key and source."""
    kwargs: dict[str, object] = {}
    for name, (raw, origin) in values.items():
        try:
            text = origin.kind != "file" and isinstance(raw, str)  # env and flags: as typed
            kwargs[name] = _convert(raw, types_[name], text=text)
        except _MismatchError as bad:
            raise ConfigurationError(
                f"{section}.{name}: {bad.expected}, got {bad.got!r} ({origin})"
            ) from None
    return kwargs


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
