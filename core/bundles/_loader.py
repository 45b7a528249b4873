"""App projects: a folder whose pyproject.toml names its ServerApp and ClientApp.

.. code-block:: toml

    [tool.fedzero.app]
    serverapp = "quickstart.server:app"
    clientapp = "quickstart.client:app"

    [tool.fedzero.app.config]
    num-rounds = 10

A Flower app's own table is read as it is (``flwr`` for ``fedzero``), with its
nested config tables flattened with dots as Flower does:

.. code-block:: toml

    [tool.flwr.app.components]
    serverapp = "quickstart.server_app:app"
    clientapp = "quickstart.client_app:app"

    [tool.flwr.app.config]
    num-server-rounds = 3
    model.hidden = 64          # run_config["model.hidden"]
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from .._apps import ClientApp, ServerApp
from .._context import Scalar, UserConfig
from .._errors import ConfigurationError
from ..runtime import scalar_from_text


@dataclasses.dataclass(frozen=True, slots=True)
class AppSpec:
    """What an app project declares."""

    root: Path
    name: str
    serverapp: str
    clientapp: str
    config: UserConfig


def read_app_spec(app_dir: str | Path) -> AppSpec:
    """Read ``[tool.fedzero.app]`` or Flower's ``[tool.flwr.app]`` from ``app_dir/pyproject.toml``.

    Raises:
        ConfigurationError: the file or a required key is missing or invalid.
    """
    root = Path(app_dir).resolve()
    path = root / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read an app project ({exc})") from exc
    app, where = app_table(data, path)
    components = app.get("components", {}) if where == "tool.flwr.app" else app
    refs = {}
    for key in ("serverapp", "clientapp"):
        value = components.get(key) if isinstance(components, dict) else None
        if not isinstance(value, str) or ":" not in value:
            table = "tool.flwr.app.components" if where == "tool.flwr.app" else where
            raise ConfigurationError(f'{path}: {table}.{key} must be "package.module:attr"')
        refs[key] = value
    config = app.get("config", {})
    if not isinstance(config, dict):
        raise ConfigurationError(f"{path}: {where}.config must be a table")
    name = str(data.get("project", {}).get("name", root.name))
    flat = flatten_config(config, where=f"{path}: {where}.config")
    return AppSpec(root, name, refs["serverapp"], refs["clientapp"], flat)


def app_table(data: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], str]:
    """Return the app's table of a parsed pyproject and its dotted name.

    ``[tool.fedzero.app]`` wins over Flower's ``[tool.flwr.app]`` when both exist.

    Raises:
        ConfigurationError: neither table exists.
    """
    tool = data.get("tool", {})
    for owner in ("fedzero", "flwr"):
        app = tool.get(owner, {}).get("app") if isinstance(tool.get(owner), dict) else None
        if isinstance(app, dict):
            return app, f"tool.{owner}.app"
    raise ConfigurationError(f"{path}: no [tool.fedzero.app] (or Flower's [tool.flwr.app]) table")


def flatten_config(table: Mapping[str, Any], *, where: str, prefix: str = "") -> UserConfig:
    """Flatten nested tables with dots (``{"a": {"b": 1}}`` → ``{"a.b": 1}``), as Flower does.

    Raises:
        ConfigurationError: a value is not a bool, int, float, str or table.
    """
    out: UserConfig = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_config(value, where=where, prefix=f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            raise ConfigurationError(
                f"{where}: {name} is a {type(value).__name__}; run config values are "
                "bool, int, float or str (or tables of them)"
            )
    return out


def load_object(ref: str, root: Path | None = None) -> Any:
    """Import ``"package.module:attr"``, with ``root`` first on ``sys.path``.

    Raises:
        ConfigurationError: the module or attribute cannot be loaded.
    """
    module_name, _, attr = ref.partition(":")
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r} (from {ref!r}): {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None


def load_client_app(spec: AppSpec) -> ClientApp:
    """Load the ClientApp an app project declares."""
    app = load_object(spec.clientapp, spec.root)
    if not isinstance(app, ClientApp):
        raise ConfigurationError(f"{spec.clientapp} is a {type(app).__name__}, not a ClientApp")
    return app


def load_server_app(spec: AppSpec) -> ServerApp:
    """Load the ServerApp an app project declares."""
    app = load_object(spec.serverapp, spec.root)
    if not isinstance(app, ServerApp):
        raise ConfigurationError(f"{spec.serverapp} is a {type(app).__name__}, not a ServerApp")
    return app


def parse_config_items(items: list[str]) -> UserConfig:
    """Parse ``["k=v", "a=1,b=2"]`` into a config dict; values are TOML scalars.

    ``num-rounds=3`` gives an int, ``lr=0.1`` a float, ``name="x"`` or ``name=x``
    a string, ``on=true`` a bool (the same rules as ``FEDZERO_*`` variables).

    Raises:
        ConfigurationError: an item is not ``key=value``.
    """
    out: UserConfig = {}
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            key, sep, raw = part.partition("=")
            if not sep or not key.strip():
                raise ConfigurationError(f"config item {part!r} is not key=value")
            out[key.strip()] = cast(Scalar, scalar_from_text(raw))
    return out
