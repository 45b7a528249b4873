"""Receive a bundle: verify manifest, hash, entries, paths, sizes and digests, then extract."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._format import (
    _CHUNK,
    DEFAULT_MAX_BYTES,
    MANIFEST_NAME,
    MAX_FILES,
    MAX_MANIFEST_BYTES,
    Bundle,
    BundleError,
    _check_hash,
    _parse_manifest,
    _path_problem,
)


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
