"""Apps by bundle: a node without a local app fetches each run's bundle from the link.

Bundles are verified against their hash, checked against the node's
allow-list, and installed (extracted) once into a content-addressed cache on a
background thread; tasks of the run wait for it (they are few: one per round).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from fedzero.core.bundles import BundleCache, BundleError, BundlePolicy

log = structlog.get_logger(__name__)


class BundleFetcher:
    """Which runs' apps are installed, and which tasks wait for one.

    Args:
        cache_dir: where bundles are extracted (None: a private temp dir).
        policy: which bundle hashes this node runs.
        wake: called from the install thread when an install finished.
    """

    def __init__(
        self, cache_dir: Path | None, policy: BundlePolicy, wake: Callable[[], None]
    ) -> None:
        self._tmp = (
            None if cache_dir is not None else tempfile.TemporaryDirectory(prefix="fz-apps-")
        )
        root = cache_dir if cache_dir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.cache = BundleCache(root)
        self.policy = policy
        self._wake = wake
        self._lock = threading.Lock()
        self._ready: dict[str, Path | BundleError] = {}
        self.requested: set[str] = set()
        self.waiting: dict[str, list[tuple[Any, ...]]] = {}  # hash -> tasks

    def app_dir(self, bundle_hash: str) -> Path | BundleError | None:
        """The installed app folder, the reason it cannot be had, or None (not yet)."""
        with self._lock:
            done = self._ready.get(bundle_hash)
        if done is not None:
            return done
        try:
            self.policy.check(bundle_hash)
        except BundleError as exc:
            return exc
        if self.cache.has(bundle_hash):
            with self._lock:
                self._ready[bundle_hash] = self.cache.path_for(bundle_hash)
            return self._ready[bundle_hash]
        return None

    def wait_for(self, bundle_hash: str, task: tuple[Any, ...]) -> bool:
        """Park ``task`` until the bundle is installed; True if it is yet to be requested."""
        self.waiting.setdefault(bundle_hash, []).append(task)
        if bundle_hash in self.requested:
            return False
        self.requested.add(bundle_hash)
        return True

    @property
    def waiting_tasks(self) -> int:
        """How many tasks wait for a bundle."""
        return sum(len(tasks) for tasks in self.waiting.values())

    def install(self, bundle_hash: str, data: bytes) -> None:
        """Verify and extract ``data`` on a background thread, then wake the agent."""

        def work() -> None:
            result: Path | BundleError
            try:
                result = self.cache.install(data, bundle_hash)
                log.info("bundle_installed", bundle=bundle_hash[:12], path=str(result))
            except BundleError as exc:
                log.error("bundle_refused", bundle=bundle_hash[:12], error=str(exc))
                result = exc
            except Exception as exc:  # e.g. a full disk: the waiting tasks fail, with the cause
                log.exception("bundle_install_failed", bundle=bundle_hash[:12], error=repr(exc))
                result = BundleError(f"cannot install bundle {bundle_hash[:12]}: {exc!r}")
            with self._lock:
                self._ready[bundle_hash] = result
            self._wake()

        threading.Thread(target=work, name="fedzero-bundle", daemon=True).start()

    def finished(self) -> list[str]:
        """Hashes whose install finished and that have waiting tasks."""
        with self._lock:
            return [h for h in self.waiting if h in self._ready]

    def close(self) -> None:
        """Remove the private cache, if any."""
        if self._tmp is not None:
            self._tmp.cleanup()
