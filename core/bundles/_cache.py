"""Where nodes and the link keep extracted bundles, and which bundles a node runs.

Trust is by hash only: a node may allow-list hashes (:class:`BundlePolicy`).
Signed bundles (trusting a publisher's key instead of each hash) are out of
scope here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .._errors import ConfigurationError
from ._format import (
    _CHUNK,
    _HEX64,
    DEFAULT_MAX_BYTES,
    MANIFEST_NAME,
    BundleError,
    _check_hash,
    _parse_manifest,
)
from ._verify import extract_bundle


class BundleCache:
    """Extracted bundles under ``root``, one folder per hash: ``root/<hash>/``.

    Safe for several processes at once: each installs into its own temporary
    folder and renames it into place; the first rename wins and the others
    discard their copy.

    Args:
        root: the cache folder (created on first install).
        max_bytes: cap on the sum of a bundle's file sizes.
    """

    def __init__(self, root: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def path_for(self, bundle_hash: str) -> Path:
        """The folder a bundle is (or would be) extracted to.

        Raises:
            BundleError: ``bundle_hash`` is not 64 lowercase hex digits.
        """
        return self.root / _check_hash(bundle_hash, "bundle hash")

    def has(self, bundle_hash: str) -> bool:
        """Whether the bundle is installed (its manifest is present and hashes right)."""
        try:
            raw = (self.path_for(bundle_hash) / MANIFEST_NAME).read_bytes()
        except OSError:
            return False
        return hashlib.sha256(raw).hexdigest() == bundle_hash

    def install(self, data: bytes, bundle_hash: str) -> Path:
        """Verify ``data`` against ``bundle_hash`` and extract it, unless already installed.

        Returns:
            The bundle's folder (put it on ``sys.path``, or pass it to
            ``read_app_spec``).

        Raises:
            BundleError: ``data`` fails verification, or the folder is occupied by
                something that is not this bundle.
        """
        dest = self.path_for(bundle_hash)
        if self.has(bundle_hash):
            return dest
        try:
            extract_bundle(data, dest, expected_hash=bundle_hash, max_bytes=self.max_bytes)
        except BundleError:
            if self.has(bundle_hash):  # another process installed it meanwhile
                return dest
            raise
        return dest

    def remove(self, bundle_hash: str) -> None:
        """Delete an installed bundle (e.g. one that failed :meth:`verify`); no-op if absent.

        The folder is first renamed away, so no reader sees a half-deleted tree.
        """
        dest = self.path_for(bundle_hash)
        doomed = dest.with_name(f".{dest.name}.{os.getpid()}.{id(self):x}.del")
        try:
            os.replace(dest, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    def verify(self, bundle_hash: str) -> bool:
        """Re-hash the installed tree against its manifest.

        Files that Python writes on import (``__pycache__/``) are ignored; any other
        extra, missing or changed file makes the tree invalid.
        """
        dest = self.path_for(bundle_hash)
        try:
            raw = (dest / MANIFEST_NAME).read_bytes()
            if hashlib.sha256(raw).hexdigest() != bundle_hash:
                return False
            files = _parse_manifest(raw)["files"]
            expected = {f["path"]: f for f in files}
            found = set(_tree_files(dest)) - {MANIFEST_NAME}
            if found != set(expected):
                return False
            for f in files:
                path = dest / f["path"]
                if path.is_symlink() or _file_sha256(path) != f["sha256"]:
                    return False
        except (OSError, BundleError):
            return False
        return True


def _tree_files(root: Path) -> Iterator[str]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = Path(folder).relative_to(root).as_posix()
        for name in files:
            yield name if rel == "." else f"{rel}/{name}"
        for d in dirs:
            if Path(folder, d).is_symlink():
                yield f"{rel}/{d}"  # a linked folder never matches the manifest


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class BundlePolicy:
    """Which bundles a node accepts.

    Args:
        allowed_hashes: the accepted bundle hashes; None accepts any bundle.
    """

    allowed_hashes: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.allowed_hashes is not None:
            hashes = frozenset(h.strip().lower() for h in self.allowed_hashes)
            for h in hashes:
                if not _HEX64.fullmatch(h):
                    raise ConfigurationError(f"allowed bundle hash {h!r} is not 64 hex digits")
            object.__setattr__(self, "allowed_hashes", hashes)

    @classmethod
    def from_file(cls, path: str | Path) -> BundlePolicy:
        """Read one hash per line (``#`` starts a comment, blank lines are skipped).

        Raises:
            ConfigurationError: the file cannot be read or holds a malformed hash.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot read the bundle allow-list ({exc})") from exc
        lines = (line.partition("#")[0].strip() for line in text.splitlines())
        return cls(frozenset(line for line in lines if line))

    def check(self, bundle_hash: str) -> None:
        """Raise unless ``bundle_hash`` is allowed.

        Raises:
            BundleError: the hash is not in the allow-list.
        """
        if self.allowed_hashes is not None and bundle_hash not in self.allowed_hashes:
            raise BundleError(f"bundle {bundle_hash} is not in this node's allow-list")
