"""App bundles: a deterministic, verifiable archive of an app project.

A bundle is a zip archive whose first entry, ``fedzero-manifest.json``, lists
every other entry with its size and SHA-256, plus the app's name, its
``serverapp``/``clientapp`` references and its default run config. The manifest
is canonical JSON (sorted keys, no spaces, ASCII only), and **the bundle hash is
the SHA-256 of the manifest bytes**. Because the manifest pins every file's
digest, the hash names the app's exact contents, and it does not depend on zip
details (compression, the zlib build, timestamps): two machines that bundle the
same files get the same hash even where their zlib (e.g. zlib-ng) compresses
differently. With the same zlib, the archive bytes are identical too: entries
are sorted by path, timestamps are 1980-01-01 00:00:00, permissions 0o644, no
extra fields or comments, ``ZIP_DEFLATED`` at level 9.

Receiving a bundle (:func:`open_bundle`, :func:`extract_bundle`,
:class:`BundleCache`) verifies everything before anything is written: the
manifest's schema and canonical form, its hash against the expected one, that
the entries are exactly the manifest's files, each entry's path (no absolute
paths, ``..``, backslashes, drive letters, symlinks, directories), declared and
actual sizes against the size cap, and every file's digest. Only then is the
tree extracted, into a temporary directory next to the destination that is
renamed into place.

Trust is by hash only: a node may allow-list hashes (:class:`BundlePolicy`).
Signed bundles (trusting a publisher's key instead of each hash) are out of
scope here.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
import tomllib
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError, FedzeroError
from ._loader import read_app_spec

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


# --------------------------------------------------------------------- building


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


def _add_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix, so external_attr carries the mode
    info.external_attr = _FILE_MODE << 16
    archive.writestr(info, data, compresslevel=_COMPRESSLEVEL)


def _patterns(pyproject: Path) -> tuple[list[str], list[str]]:
    table = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["fedzero"]["app"]
    out = []
    for key in ("include", "exclude"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigurationError(
                f"{pyproject}: tool.fedzero.app.{key} must be a list of glob patterns"
            )
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


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> Iterator[bytes]:
    """Yield the member's bytes in chunks; refuse more than ``limit`` bytes."""
    count = 0
    with archive.open(info) as member:
        while chunk := member.read(_CHUNK):
            count += len(chunk)
            if count > limit:
                raise BundleError(f"entry {info.filename!r}: more data than its declared size")
            yield chunk


def _check_entry(info: zipfile.ZipInfo) -> None:
    name = info.filename
    if info.orig_filename != name or name.endswith("/") or info.is_dir():
        raise BundleError(f"entry {name!r}: folder entries and odd names are not allowed")
    problem = _path_problem(name)
    if problem:
        raise BundleError(f"entry {name!r}: {problem}")
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise BundleError(f"entry {name!r}: symlink entries are not allowed")
    if kind not in (0, stat.S_IFREG):
        raise BundleError(f"entry {name!r}: not a regular file")
    if info.flag_bits & 0x1:
        raise BundleError(f"entry {name!r}: encrypted entries are not allowed")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise BundleError(f"entry {name!r}: compression {info.compress_type} is not supported")


def _verified(
    data: bytes, expected_hash: str | None, max_bytes: int
) -> tuple[zipfile.ZipFile, Bundle]:
    """Open and fully verify ``data``; return the open archive and the bundle."""
    if expected_hash is not None:
        _check_hash(expected_hash)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise BundleError(f"not a zip archive ({exc})") from None
    try:
        bundle = _verify_archive(archive, data, expected_hash, max_bytes)
    except BaseException:
        archive.close()
        raise
    return archive, bundle


def read_manifest(data: bytes, *, expected_hash: str) -> dict[str, Any]:
    """Check a bundle's manifest and hash only (cheap: the files are not read).

    For a quick accept/refuse where the full verification (:func:`open_bundle`,
    :meth:`BundleCache.install`) happens later, off the latency-critical path.

    Raises:
        BundleError: not a bundle, a malformed manifest, or another hash.
    """
    _check_hash(expected_hash)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if not infos or infos[0].filename != MANIFEST_NAME:
                raise BundleError(f"the first entry must be {MANIFEST_NAME}")
            _check_entry(infos[0])
            if infos[0].file_size > MAX_MANIFEST_BYTES:
                raise BundleError(
                    f"manifest: {infos[0].file_size} bytes, over {MAX_MANIFEST_BYTES}"
                )
            raw = b"".join(_read_member(archive, infos[0], infos[0].file_size))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError) as exc:
        raise BundleError(f"not a readable bundle ({exc})") from None
    manifest = _parse_manifest(raw)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected_hash:
        raise BundleError(f"bundle hash is {digest}, expected {expected_hash}")
    return manifest


def _verify_archive(
    archive: zipfile.ZipFile, data: bytes, expected_hash: str | None, max_bytes: int
) -> Bundle:
    infos = archive.infolist()
    if not infos or infos[0].filename != MANIFEST_NAME:
        raise BundleError(f"the first entry must be {MANIFEST_NAME}")
    if len(infos) > MAX_FILES + 1:
        raise BundleError(f"{len(infos) - 1} files, more than {MAX_FILES}")
    for info in infos:
        _check_entry(info)
    if infos[0].file_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"manifest: {infos[0].file_size} bytes, over {MAX_MANIFEST_BYTES}")
    try:
        raw = b"".join(_read_member(archive, infos[0], infos[0].file_size))
        manifest = _parse_manifest(raw)
        digest = hashlib.sha256(raw).hexdigest()
        if expected_hash is not None and digest != expected_hash:
            raise BundleError(f"bundle hash is {digest}, expected {expected_hash}")
        _check_entries(manifest, infos[1:], max_bytes)
        for info, f in zip(infos[1:], manifest["files"], strict=True):
            h = hashlib.sha256()
            size = 0
            for chunk in _read_member(archive, info, f["size"]):
                h.update(chunk)
                size += len(chunk)
            if size != f["size"] or h.hexdigest() != f["sha256"]:
                raise BundleError(f"entry {f['path']!r}: content does not match the manifest")
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        OSError,
        EOFError,
        ValueError,
    ) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"corrupt archive ({exc})") from None
    return Bundle(data, digest, manifest, manifest["name"])


def _check_entries(manifest: dict[str, Any], infos: list[zipfile.ZipInfo], max_bytes: int) -> None:
    names = [i.filename for i in infos]
    expected = [f["path"] for f in manifest["files"]]
    if names != expected:
        extra = sorted(set(names) - set(expected))
        missing = sorted(set(expected) - set(names))
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise BundleError(
            "entries do not match the manifest "
            f"(extra: {extra}, missing: {missing}, duplicated: {dupes}; order must match)"
        )
    total = sum(f["size"] for f in manifest["files"])
    if total > max_bytes:
        raise BundleError(f"files total {total} bytes, over the cap of {max_bytes} bytes")
    for info, f in zip(infos, manifest["files"], strict=True):
        if info.file_size != f["size"]:
            raise BundleError(
                f"entry {f['path']!r}: declared size {info.file_size}, manifest says {f['size']}"
            )


def open_bundle(
    data: bytes, *, expected_hash: str | None, max_bytes: int = DEFAULT_MAX_BYTES
) -> Bundle:
    """Verify a bundle's bytes completely and return it (nothing is written).

    Args:
        data: the archive.
        expected_hash: the hash it must have (None: accept whatever it is, e.g.
            when the hash is computed here and then shown to an operator).
        max_bytes: cap on the sum of the files' sizes.

    Raises:
        BundleError: the bundle is malformed, oversized, or has another hash.
    """
    archive, bundle = _verified(bytes(data), expected_hash, max_bytes)
    archive.close()
    return bundle


def extract_bundle(
    data: bytes,
    dest_dir: str | Path,
    *,
    expected_hash: str | None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Bundle:
    """Verify a bundle, then extract it atomically to ``dest_dir``.

    The files (and the manifest, for :meth:`BundleCache.verify`) are written to a
    fresh temporary folder next to ``dest_dir``, which is then renamed to
    ``dest_dir``: readers never see a partial tree.

    Raises:
        BundleError: the bundle fails verification (then nothing was written),
            or ``dest_dir`` already exists and is not empty.
        OSError: writing failed (the temporary folder is removed).
    """
    dest = Path(dest_dir)
    archive, bundle = _verified(bytes(data), expected_hash, max_bytes)
    with archive:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            for info in archive.infolist():  # names verified: the manifest, then its files
                target = tmp / info.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("xb") as out:
                    for chunk in _read_member(archive, info, info.file_size):
                        out.write(chunk)
            try:
                os.replace(tmp, dest)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise BundleError(f"{dest} already exists and is not empty") from None
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return bundle
