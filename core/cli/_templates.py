"""App templates: ``fedzero new`` writes a working app project, offline.

Two frameworks:

- ``numpy``: linear regression on synthetic data, in plain NumPy (no other
  dependency; nothing is downloaded).
- ``pytorch``: a small PyTorch MLP classifying synthetic Gaussian clusters.

Both ServerApps use the strategy API (``FedAvg`` aggregated on the link, central
evaluation with ``evaluate_fn``), and both run at once with
``fedzero local <dir> --nodes 2``. The templates are real files shipped as
package data (``templates/<framework>/``, plus ``templates/common/``), linted and
type-checked with the rest of the code; the placeholder package ``<framework>_app``
and the tokens ``__NAME__``, ``__PACKAGE__`` and ``__FRAMEWORK__`` are replaced on
the way out.
"""

from __future__ import annotations

import keyword
import re
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from .._errors import ConfigurationError

FRAMEWORKS = ("numpy", "pytorch")
"""The frameworks :func:`create_app` knows."""

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_RESERVED = frozenset({"fedzero", "numpy", "torch", "sklearn", "scipy", "test", "tests", "app"})


def create_app(name: str, dest: str | Path, *, framework: str = "numpy") -> Path:
    """Write a new app project named ``name`` into the folder ``dest``.

    The project's import package is ``name`` lower-cased, with ``-`` turned into
    ``_`` (``my-app`` → ``my_app``).

    Args:
        name: the project name: a letter, then up to 63 letters, digits, ``_`` or
            ``-``; its package name may not shadow a standard-library or common
            module (``json``, ``numpy``, ``torch``, ...).
        dest: the project folder; created if missing, refused if not empty.
        framework: one of :data:`FRAMEWORKS`.

    Returns:
        The project folder.

    Raises:
        ConfigurationError: ``name`` or ``framework`` is not allowed, or ``dest``
            exists and is not an empty folder.
    """
    package = package_name(name)
    if framework not in FRAMEWORKS:
        raise ConfigurationError(
            f"unknown framework {framework!r}; choose one of: {', '.join(FRAMEWORKS)}"
        )
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigurationError(f"{dest} already exists and is not an empty folder")
    for rel, text in _template_files(framework):
        path = dest / rel.replace(f"{framework}_app", package, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = text.replace(f"{framework}_app", package).replace("__PACKAGE__", package)
        text = text.replace("__NAME__", name).replace("__FRAMEWORK__", framework)
        path.write_text(text, encoding="utf-8")
    return dest


def package_name(name: str) -> str:
    """Return the import package of project ``name``, after validating it.

    Raises:
        ConfigurationError: ``name`` is not allowed (the message says what is).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"app name {name!r} is not allowed: use a letter, then up to 63 letters, "
            "digits, '_' or '-' (e.g. 'my-app')"
        )
    package = name.lower().replace("-", "_")
    if keyword.iskeyword(package) or package in sys.stdlib_module_names or package in _RESERVED:
        raise ConfigurationError(
            f"app name {name!r} is not allowed: its package {package!r} would shadow "
            "a Python keyword or module; pick another name"
        )
    return package


def _template_files(framework: str) -> Iterator[tuple[str, str]]:
    """Yield ``(relative path, text)`` of every file of ``framework``'s template."""
    root = resources.files(__package__).joinpath("templates")
    yield "README.md", root.joinpath("common", "README.md").read_text(encoding="utf-8")
    yield ".gitignore", root.joinpath("common", "gitignore.txt").read_text(encoding="utf-8")
    stack = [("", root.joinpath(framework))]
    while stack:
        prefix, folder = stack.pop()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            rel = f"{prefix}{entry.name}"
            if entry.is_dir():
                if entry.name != "__pycache__":
                    stack.append((f"{rel}/", entry))
            elif not entry.name.endswith((".pyc", ".pyo")):
                yield rel, entry.read_text(encoding="utf-8")
