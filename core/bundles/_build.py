"""Build a bundle from an app project: walk, filter, hash, write a deterministic zip."""

from __future__ import annotations

import hashlib
import io
import os
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError
from ._format import (
    _COMPRESSLEVEL,
    _EPOCH,
    _FILE_MODE,
    DEFAULT_EXCLUDES,
    DEFAULT_MAX_BYTES,
    FORMAT_VERSION,
    MANIFEST_NAME,
    MAX_FILES,
    Bundle,
    _path_problem,
    canonical_json,
)
from ._loader import app_table, read_app_spec


def build_bundle(app_dir: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Bundle:
    """Bundle the app project in ``app_dir``.

    Which files: every regular file under ``app_dir``, minus :data:`DEFAULT_EXCLUDES`
    and ``[tool.fedzero.app] exclude``; if ``[tool.fedzero.app] include`` is given,
    only files it matches. ``pyproject.toml`` is always included. Patterns are
    matched case-sensitively (``fnmatch``, where ``*`` also matches ``/``) against
    POSIX paths relative to ``app_dir``: a pattern without ``/`` matches a name at
    any depth (``*.csv``), a pattern with ``/`` matches the whole relative path
    (``data/*.csv``), a leading ``/`` anchors it (``/build/``), a trailing ``/``
    matches folders only (and so everything in them). An include pattern also
    matches the files inside a folder it matches.

    Args:
        app_dir: the app project folder (with ``pyproject.toml``).
        max_bytes: cap on the sum of the files' sizes.

    Returns:
        The bundle (deterministic: the same files give the same bytes and hash).

    Raises:
        ConfigurationError: the project is invalid, a file to bundle is a symlink
            or not a regular file, a path cannot be bundled, or the files exceed
            ``max_bytes``.
    """
    spec = read_app_spec(app_dir)
    root = spec.root
    include, exclude = _patterns(root / "pyproject.toml")
    paths = sorted(_walk(root, include, (*DEFAULT_EXCLUDES, *exclude)))
    if len(paths) > MAX_FILES:
        raise ConfigurationError(f"{root}: {len(paths)} files to bundle, more than {MAX_FILES}")
    total = sum((root / p).stat().st_size for p in paths)
    if total > max_bytes:
        raise ConfigurationError(
            f"{root}: the files to bundle total {total} bytes, over the cap of {max_bytes} bytes"
        )
    contents = {p: (root / p).read_bytes() for p in paths}
    total = sum(len(c) for c in contents.values())  # files may have changed since stat
    if total > max_bytes:
        raise ConfigurationError(
            f"{root}: the files to bundle total {total} bytes, over the cap of {max_bytes} bytes"
        )
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "name": spec.name,
        "files": [
            {"path": p, "size": len(c), "sha256": hashlib.sha256(c).hexdigest()}
            for p, c in contents.items()
        ],
        "serverapp": spec.serverapp,
        "clientapp": spec.clientapp,
        "config": spec.config,
    }
    try:
        manifest_bytes = canonical_json(manifest)
    except ValueError as exc:
        raise ConfigurationError(f"{root}: tool.fedzero.app.config: {exc}") from exc
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _add_entry(archive, MANIFEST_NAME, manifest_bytes)
        for p, c in contents.items():
            _add_entry(archive, p, c)
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    return Bundle(buffer.getvalue(), digest, manifest, spec.name)


def _add_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix, so external_attr carries the mode
    info.external_attr = _FILE_MODE << 16
    archive.writestr(info, data, compresslevel=_COMPRESSLEVEL)


def _patterns(pyproject: Path) -> tuple[list[str], list[str]]:
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    table, where = app_table(data, pyproject)
    out = []
    for key in ("include", "exclude"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigurationError(f"{pyproject}: {where}.{key} must be a list of glob patterns")
        out.append(value)
    return out[0], out[1]


def _matches(rel: str, is_dir: bool, pattern: str) -> bool:
    if pattern.endswith("/"):
        if not is_dir:
            return False
        pattern = pattern.rstrip("/")
    if pattern.startswith("/"):
        return fnmatchcase(rel, pattern.lstrip("/"))
    if "/" in pattern:
        return fnmatchcase(rel, pattern)
    return fnmatchcase(rel.rpartition("/")[2], pattern)


def _included(rel: str, include: list[str]) -> bool:
    if not include or rel == "pyproject.toml":
        return True
    parts = rel.split("/")
    folders = ["/".join(parts[:i]) for i in range(1, len(parts))]
    return any(_matches(rel, False, p) for p in include) or any(
        _matches(d, True, p) for d in folders for p in include
    )


def _walk(root: Path, include: list[str], exclude: Iterable[str]) -> Iterator[str]:
    exclude = tuple(exclude)
    pending = [""]
    while pending:
        folder = pending.pop()
        with os.scandir(root / folder) as entries:
            found = sorted(entries, key=lambda e: e.name)
        for entry in found:
            rel = f"{folder}/{entry.name}" if folder else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if rel != "pyproject.toml" and any(_matches(rel, is_dir, p) for p in exclude):
                continue
            if entry.is_symlink():
                raise ConfigurationError(
                    f"{root / rel}: symlinks cannot be bundled (exclude it, or copy the target)"
                )
            if is_dir:
                pending.append(rel)
            elif not _included(rel, include):
                continue
            elif not entry.is_file(follow_symlinks=False):
                raise ConfigurationError(f"{root / rel}: not a regular file, cannot be bundled")
            else:
                problem = _path_problem(rel)
                if problem or rel == MANIFEST_NAME:
                    raise ConfigurationError(
                        f"{root / rel}: cannot be bundled ({problem or 'reserved name'})"
                    )
                yield rel


# -------------------------------------------------------------------- verifying
