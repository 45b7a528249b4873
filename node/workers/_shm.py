"""Shared-memory segments for the tensor bytes between the agent and a worker.

A task's or reply's payload frames (the safetensors frames of a fedzero Message)
above :data:`SHM_THRESHOLD` bytes do not cross the agent <-> worker ipc socket:
the sender copies them once into a *segment*, a file in the worker's private
directory under ``/dev/shm`` (tmpfs: memory, never a disk), and the control
frame names the segment and the frame sizes. The receiver maps the segment once,
read-only, and hands out NumPy views of it: the arrays a ClientApp receives are
read-only views, and the reply the agent forwards to the link is sent from the
mapping with ``copy=False``. One memcpy per direction, where a socket hop costs
two (the kernel's copy in and out) plus page faults on fresh buffers.

Segments are reused: the writer owns them (creates, writes, deletes), the reader
tells it which ones it has *released* (every view of the message it read from
them is gone) and only a released segment is written again. A view the receiver
keeps (a ClientApp storing the received arrays in ``context.state``, a reply
waiting for upload credit) keeps its segment busy, so its bytes never change
under it; the writer then uses another one. A segment the writer deletes is
announced as *gone*, and the reader drops its mapping once its views are gone.

Lifetime: the agent makes one directory per pool (``fedzero-node-<pid>-*``) and
one sub-directory per worker; the worker's directory is removed when the worker
is reaped (whatever killed it), the pool's when the pool closes, and a pool
directory whose agent died without closing it (SIGKILL) is removed by the next
pool on the machine. Removing a file frees its memory once nobody maps it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import structlog

from fedzero.core import DeserializationError
from fedzero.core.wire import as_memoryview

log = structlog.get_logger(__name__)

SHM_THRESHOLD: Final = 64 * 2**10
"""Payloads of at least this many bytes go through a segment; smaller ones inline."""

_ALIGN: Final = 64  # each frame starts at a multiple of 64 bytes in its segment
_GRAIN: Final = 2**20  # segment sizes are rounded up to whole MiB
_POOL_PREFIX: Final = "fedzero-node-"
_NAME: Final = re.compile(r"[a-z]+-[0-9]{1,12}")

Bytes = npt.NDArray[np.uint8]


def layout(sizes: Sequence[int]) -> tuple[list[int], int]:
    """The offsets of frames of ``sizes`` in a segment, and the bytes they span."""
    offsets, end = [], 0
    for size in sizes:
        start = -(-end // _ALIGN) * _ALIGN
        offsets.append(start)
        end = start + size
    return offsets, end


def shm_root() -> Path:
    """Where segments live: ``/dev/shm`` when it is a writable directory, else the temp dir."""
    root = Path("/dev/shm")  # noqa: S108 - a private 0700 directory is made inside
    if root.is_dir() and os.access(root, os.W_OK | os.X_OK):
        return root
    return Path(tempfile.gettempdir())


def make_pool_dir(root: Path | None = None) -> Path:
    """A private directory for one pool's segments (stale ones of dead agents go first)."""
    root = shm_root() if root is None else root
    sweep_stale(root)
    return Path(tempfile.mkdtemp(prefix=f"{_POOL_PREFIX}{os.getpid()}-", dir=root))


def sweep_stale(root: Path) -> list[Path]:
    """Remove the pool directories of ours whose agent process is gone; return them."""
    removed = []
    for path in root.glob(f"{_POOL_PREFIX}*-*"):
        pid = path.name[len(_POOL_PREFIX) :].split("-", 1)[0]
        with contextlib.suppress(OSError):
            if not pid.isdigit() or path.stat().st_uid != os.getuid() or _alive(int(pid)):
                continue
            shutil.rmtree(path)
            removed.append(path)
            log.info("shm_stale_removed", path=str(path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process (EPERM): alive
    return True


@dataclasses.dataclass(slots=True)
class _Segment:
    name: str
    size: int
    mapping: mmap.mmap
    busy: bool = False


class SegmentWriter:
    """The sending end: owns its segments in ``directory``, named ``<prefix>-<n>``.

    Args:
        directory: the worker's segment directory.
        prefix: the names of this writer's segments (``down``: agent, ``up``: worker).
    """

    def __init__(self, directory: Path, prefix: str) -> None:
        self._dir = directory
        self._prefix = prefix
        self._segments: dict[str, _Segment] = {}
        self._count = 0
        self._gone: list[str] = []

    def write(self, frames: Sequence[object]) -> dict[str, Any]:
        """Copy ``frames`` into a free segment; return the control field naming them."""
        views = [as_memoryview(frame, i) for i, frame in enumerate(frames)]
        sizes = [view.nbytes for view in views]
        offsets, end = layout(sizes)
        seg = self._free(end)
        target = np.frombuffer(seg.mapping, dtype=np.uint8)
        for view, start, size in zip(views, offsets, sizes, strict=True):
            target[start : start + size] = np.frombuffer(view, dtype=np.uint8)
        del target
        seg.busy = True
        return {"seg": seg.name, "sizes": sizes}

    def _free(self, nbytes: int) -> _Segment:
        """A free segment of at least ``nbytes`` (free smaller ones are deleted)."""
        for seg in self._segments.values():
            if not seg.busy and seg.size >= nbytes:
                return seg
        for seg in [s for s in self._segments.values() if not s.busy]:
            self._delete(seg)
        self._count += 1
        name = f"{self._prefix}-{self._count}"
        size = max(_GRAIN, -(-nbytes // _GRAIN) * _GRAIN)
        fd = os.open(self._dir / name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        seg = self._segments[name] = _Segment(name, size, mapping)
        return seg

    def release(self, names: Iterable[object]) -> None:
        """The reader let go of these segments: they may be written again."""
        for name in names:
            seg = self._segments.get(name) if isinstance(name, str) else None
            if seg is not None:
                seg.busy = False

    def take_gone(self) -> list[str]:
        """The segments deleted since the last call (to tell the reader)."""
        gone, self._gone = self._gone, []
        return gone

    def _delete(self, seg: _Segment) -> None:
        del self._segments[seg.name]
        with contextlib.suppress(OSError):
            (self._dir / seg.name).unlink()
        with contextlib.suppress(BufferError):
            seg.mapping.close()
        self._gone.append(seg.name)

    def close(self) -> None:
        """Delete every segment (a mapping still viewed is freed with its last view)."""
        for seg in list(self._segments.values()):
            self._delete(seg)
        self._gone.clear()


class SegmentReader:
    """The receiving end: maps the peer's segments read-only and tracks their views.

    Args:
        directory: the worker's segment directory.
        prefix: the names the peer's segments must have.
    """

    def __init__(self, directory: Path, prefix: str) -> None:
        self._dir = directory
        self._prefix = prefix
        self._maps: dict[str, mmap.mmap] = {}
        self._held: list[tuple[str, weakref.ref[Bytes]]] = []

    def open(self, field: object) -> list[Bytes]:
        """The frames a control field names, as read-only uint8 views of the segment.

        Raises:
            DeserializationError: the field is malformed, or names a segment that
                is not the peer's or does not hold the frames.
        """
        name, sizes = _check_field(field, self._prefix)
        offsets, end = layout(sizes)
        mapping = self._maps.get(name)
        if mapping is None:
            mapping = self._maps[name] = self._map(name)
        if end > len(mapping):
            raise DeserializationError(f"shm segment {name}: {end} bytes needed, {len(mapping)}")
        # Every frame, and every array decoded from one, keeps `whole` alive (NumPy
        # bases, and memoryviews' exporters): it dies with the last view of the message.
        whole = np.frombuffer(mapping, dtype=np.uint8, count=end)
        self._held.append((name, weakref.ref(whole)))
        return [whole[start : start + size] for start, size in zip(offsets, sizes, strict=True)]

    def _map(self, name: str) -> mmap.mmap:
        try:
            fd = os.open(self._dir / name, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise DeserializationError(f"shm segment {name}: {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise DeserializationError(f"shm segment {name} is empty")
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            return mmap.mmap(fd, size, flags, mmap.PROT_READ)
        finally:
            os.close(fd)

    def released(self) -> list[str]:
        """The segments none of whose views are alive any more (each named once)."""
        busy = [(name, ref) for name, ref in self._held if ref() is not None]
        names = {name for name, _ in self._held} - {name for name, _ in busy}
        self._held = busy
        return sorted(names)

    def forget(self, names: Iterable[object]) -> None:
        """The writer deleted these segments: drop their mappings (freed with their views)."""
        for name in names:
            if isinstance(name, str):
                self._maps.pop(name, None)

    def close(self) -> None:
        """Drop every mapping (those still viewed are freed with their last view)."""
        self._maps.clear()
        self._held.clear()


def _check_field(field: object, prefix: str) -> tuple[str, list[int]]:
    if not isinstance(field, dict) or set(field) != {"seg", "sizes"}:
        raise DeserializationError("shm field: needs exactly seg and sizes")
    name, sizes = field["seg"], field["sizes"]
    if not isinstance(name, str) or not _NAME.fullmatch(name) or not name.startswith(prefix + "-"):
        raise DeserializationError(f"shm field: segment name {name!r:.40} is not the peer's")
    if not isinstance(sizes, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in sizes
    ):
        raise DeserializationError("shm field: sizes must be a list of byte counts")
    return name, sizes


@dataclasses.dataclass(slots=True)
class SegmentEnds:
    """One side's two ends in a worker's directory: what it writes, what it reads.

    Attributes:
        directory: the worker's segment directory.
        writer: the segments this side writes.
        reader: the peer's segments this side reads.
    """

    directory: Path
    writer: SegmentWriter
    reader: SegmentReader

    @classmethod
    def of(cls, directory: Path, *, agent: bool) -> SegmentEnds:
        """The agent's ends (writes ``down-*``, reads ``up-*``) or the worker's."""
        mine, theirs = ("down", "up") if agent else ("up", "down")
        return cls(directory, SegmentWriter(directory, mine), SegmentReader(directory, theirs))

    def send(self, frames: Sequence[object]) -> dict[str, Any]:
        """Control fields carrying ``frames`` (the payload) and the segment bookkeeping."""
        field = self.writer.write(frames)
        return {"shm": field, **self.bookkeeping()}

    def bookkeeping(self) -> dict[str, Any]:
        """What the peer must learn: segments released here, segments deleted."""
        return {"released": self.reader.released(), "gone": self.writer.take_gone()}

    def receive(self, header: dict[str, Any]) -> list[Bytes] | None:
        """Apply the header's bookkeeping; the payload frames it names (None: inline).

        Raises:
            DeserializationError: the ``shm`` field or the segment is bad.
        """
        self.writer.release(_names(header.get("released")))
        self.reader.forget(_names(header.get("gone")))
        field = header.get("shm")
        return None if field is None else self.reader.open(field)

    def close(self, *, remove: bool) -> None:
        """Drop both ends; ``remove``: also delete the directory (the agent's job)."""
        self.writer.close()
        self.reader.close()
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)


def _names(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []
