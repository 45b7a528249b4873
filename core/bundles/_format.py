"""The bundle format: its constants, canonical JSON, the manifest schema and path rules.

See the package docstring of :mod:`fedzero.core.bundles` for the format.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from .._errors import DeserializationError, FedzeroError
from ..wire import check_scalar_values

MANIFEST_NAME = "fedzero-manifest.json"
"""Name of the manifest, the archive's first entry and a file of an extracted tree."""
FORMAT_VERSION = 1
"""The manifest format this module writes and reads."""
DEFAULT_MAX_BYTES = 50 * 2**20
"""Default cap on the sum of the sizes of a bundle's files (50 MiB)."""
MAX_FILES = 10_000
"""Most files a bundle may hold."""
MAX_MANIFEST_BYTES = 8 * 2**20
"""Largest manifest accepted."""
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".*",  # hidden files and folders, among them .git/ and .venv/
    ".git/",
    ".venv/",
    "__pycache__/",
    "*.pyc",
    "*.egg-info/",
    "*.fzb",
    "/build/",
    "/dist/",
)
"""Patterns never bundled (see :func:`build_bundle` for the pattern syntax)."""

_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644  # regular file, rw-r--r--
_COMPRESSLEVEL = 9
_CHUNK = 1 << 16
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DRIVE = re.compile(r"[A-Za-z]:")
_MANIFEST_KEYS = frozenset({"format", "name", "files", "serverapp", "clientapp", "config"})


class BundleError(FedzeroError, ValueError):
    """A bundle is malformed, does not match its hash, or is not allowed here.

    The message names the problem, e.g. ``"entry '../evil': path escapes the
    bundle"``.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class Bundle:
    """A built or verified bundle.

    Attributes:
        data: the archive bytes.
        hash: hex SHA-256 of the manifest bytes; names the bundle.
        manifest: the parsed manifest (``format``, ``name``, ``files``,
            ``serverapp``, ``clientapp``, ``config``).
        name: the app's name (``[project].name``).
    """

    data: bytes
    hash: str
    manifest: dict[str, Any]
    name: str

    @property
    def serverapp(self) -> str:
        """The ServerApp reference, ``"package.module:attr"``."""
        return str(self.manifest["serverapp"])

    @property
    def clientapp(self) -> str:
        """The ClientApp reference, ``"package.module:attr"``."""
        return str(self.manifest["clientapp"])

    @property
    def config(self) -> dict[str, Any]:
        """The app's default run config."""
        return dict(self.manifest["config"])

    @property
    def filename(self) -> str:
        """``<name>-<hash[:12]>.fzb``, the name :meth:`write` uses."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", self.name).strip("._") or "app"
        return f"{safe}-{self.hash[:12]}.fzb"

    def write(self, directory: str | Path) -> Path:
        """Write the archive into ``directory`` (created if missing); return its path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / self.filename
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(self.data)
        os.replace(tmp, path)
        return path


def canonical_json(value: object) -> bytes:
    """Serialize ``value`` canonically: sorted keys, no spaces, ASCII, no NaN.

    Raises:
        ValueError: ``value`` holds something JSON cannot represent exactly.
    """
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc
    return text.encode("ascii")


def _path_problem(path: str) -> str | None:
    """Why ``path`` may not name a bundle entry, or None if it may."""
    if not path:
        return "empty path"
    if "\\" in path:
        return "backslash in path"
    if "\0" in path or any(ord(c) < 32 for c in path):
        return "control character in path"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "path is not valid UTF-8"
    if path.startswith("/"):
        return "absolute path"
    if _DRIVE.match(path):
        return "drive letter in path"
    parts = path.split("/")
    if ".." in parts:
        return "path escapes the bundle"
    if any(p in ("", ".") for p in parts):
        return "empty or '.' path component"
    return None


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise BundleError("manifest: duplicate key")
    return out


def _reject_constant(name: str) -> Any:
    raise BundleError(f"manifest: {name} is not allowed")


def _parse_manifest(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(
            raw.decode("ascii"), object_pairs_hook=_strict_object, parse_constant=_reject_constant
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(f"manifest: not canonical JSON ({exc})") from None
    try:  # "\ud800" is plain ASCII in the manifest, and a lone surrogate once parsed
        check_scalar_values(value, "manifest")
    except DeserializationError as exc:
        raise BundleError(str(exc)) from None
    _check_schema(value)
    try:
        canonical = canonical_json(value)
    except ValueError as exc:
        raise BundleError(f"manifest: {exc}") from None
    if canonical != raw:
        raise BundleError("manifest: not in canonical form (sorted keys, no spaces, ASCII)")
    return dict(value)


def _check_schema(m: object) -> None:
    if not isinstance(m, dict) or set(m) != _MANIFEST_KEYS:
        raise BundleError(f"manifest: must be an object with keys {sorted(_MANIFEST_KEYS)}")
    if m["format"] != FORMAT_VERSION or isinstance(m["format"], bool):
        raise BundleError(f"manifest: format {m['format']!r} is not supported")
    if not isinstance(m["name"], str) or not m["name"]:
        raise BundleError("manifest: name must be a non-empty string")
    for key in ("serverapp", "clientapp"):
        if not isinstance(m[key], str) or ":" not in m[key]:
            raise BundleError(f'manifest: {key} must be "package.module:attr"')
    config = m["config"]
    if not isinstance(config, dict) or not all(
        isinstance(v, str | int | float) for v in config.values()
    ):
        raise BundleError("manifest: config must map names to scalars")
    files = m["files"]
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise BundleError(f"manifest: files must be a list of at most {MAX_FILES} entries")
    paths: list[str] = []
    for f in files:
        if not isinstance(f, dict) or set(f) != {"path", "size", "sha256"}:
            raise BundleError("manifest: each file must be {path, size, sha256}")
        path, size, digest = f["path"], f["size"], f["sha256"]
        problem = _path_problem(path) if isinstance(path, str) else "path is not a string"
        if problem or path == MANIFEST_NAME:
            raise BundleError(f"manifest: file {path!r}: {problem or 'reserved name'}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BundleError(f"manifest: file {path!r}: size must be an integer >= 0")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise BundleError(f"manifest: file {path!r}: sha256 must be 64 lowercase hex digits")
        paths.append(path)
    if paths != sorted(set(paths)):
        raise BundleError("manifest: file paths must be unique and sorted")
    folders = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    if clash := folders.intersection(paths):
        raise BundleError(f"manifest: {sorted(clash)[0]!r} is both a file and a folder")


def _check_hash(value: str, what: str = "expected hash") -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise BundleError(f"{what} {value!r} is not 64 lowercase hex digits")
    return value
