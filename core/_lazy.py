"""Names a package imports on first use (PEP 562), so that importing it costs nothing.

A package lists each lazy name with the module that defines it; the first
``package.name`` (or ``from package import name``) imports that module and keeps
the value in the package, so later lookups are plain attribute reads. The
package also imports the same names under ``if TYPE_CHECKING:`` for type
checkers, and installs the hooks under ``if not TYPE_CHECKING:``, so a type
checker still reports a name the package does not have.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``__getattr__`` and ``__dir__`` for ``package``.

    Args:
        package: the package's ``__name__``.
        where: each lazy name and the module defining it, relative to ``package``
            (``{"Grid": "._grid"}``).
    """

    def get(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        vars(sys.modules[package])[name] = value
        return value

    def names() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return get, names
