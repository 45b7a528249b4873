"""One identity, one process: a node holds an exclusive lock on its state directory.

Two node processes on one state directory would claim one node id and flap on
the link, each registration failing the other's tasks. The agent takes an
``fcntl.flock`` on ``<state_dir>/node.lock`` when it is made and keeps it until
it stops; the kernel drops it when the process dies, so a crash never leaves a
stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Final

from fedzero.core import ConfigurationError

LOCK_NAME: Final = "node.lock"
"""The lock file in the state directory (it holds the pid of the node that has it)."""


class StateDirLock:
    """An exclusive lock on a node's state directory, taken at once.

    Args:
        state_dir: the node's state directory (made if missing).

    Raises:
        ConfigurationError: another node (process or agent) holds the lock, or the
            directory cannot be used.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigurationError(f"state_dir: cannot use {state_dir} ({exc})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise ConfigurationError(
                f"state_dir: {state_dir} is in use by another node (pid {holder}); "
                "one state directory is one node identity: give each node its own"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the only descriptor releases the flock
