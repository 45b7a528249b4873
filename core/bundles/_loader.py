"""App projects: a folder whose pyproject.toml names its ServerApp and ClientApp.

.. code-block:: toml

    [tool.fedzero.app]
    serverapp = "quickstart.server:app"
    clientapp = "quickstart.client:app"

    [tool.fedzero.app.config]
    num-rounds = 10
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import tomllib
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
    """Read ``[tool.fedzero.app]`` from ``app_dir/pyproject.toml``.

    Raises:
        ConfigurationError: the file or a required key is missing or invalid.
    """
    root = Path(app_dir).resolve()
    path = root / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read an app project ({exc})") from exc
    app = data.get("tool", {}).get("fedzero", {}).get("app")
    if not isinstance(app, dict):
        raise ConfigurationError(f"{path}: no [tool.fedzero.app] table")
    refs = {}
    for key in ("serverapp", "clientapp"):
        value = app.get(key)
        if not isinstance(value, str) or ":" not in value:
            raise ConfigurationError(
                f'{path}: tool.fedzero.app.{key} must be "package.module:attr"'
            )
        refs[key] = value
    config = app.get("config", {})
    if not isinstance(config, dict) or any(isinstance(v, dict | list) for v in config.values()):
        raise ConfigurationError(f"{path}: tool.fedzero.app.config must map names to scalars")
    name = str(data.get("project", {}).get("name", root.name))
    return AppSpec(root, name, refs["serverapp"], refs["clientapp"], dict(config))


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
