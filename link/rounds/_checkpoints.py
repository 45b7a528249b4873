"""Per-round global-model checkpoints as ``.safetensors`` files.

Layout: ``<checkpoint_dir>/run-<id>/round-<n>.safetensors``, where
``checkpoint_dir`` is typically ``<state_dir>/checkpoints``. A checkpoint is the
payload frames of the wire codec written one after the other (frame 1 is the
8-byte length and safetensors header, then one frame per tensor), so saving
copies no tensor bytes in Python and any safetensors reader can open the file.

Saving is atomic: the frames go to a temporary file in the same folder, which
is fsynced, renamed over the final name with :func:`os.replace`, and the folder
is fsynced. A crash at any point leaves either the old file or the new one under
the final name, never a partial one; stray temporaries (``.round-*.tmp``) are
ignored by :func:`list_checkpoints` and removed by :func:`prune_checkpoints`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import structlog

from fedzero.core import ArrayRecord, Buffer, DecodeLimits, DeserializationError, UnknownRunError
from fedzero.core.wire import parse_payload

log = structlog.get_logger(__name__)

_NAME: Final = re.compile(r"round-(\d+)\.safetensors")
_TMP_PREFIX: Final = ".round-"
_LEN: Final = 8


def run_dir(checkpoint_dir: str | os.PathLike[str], run_id: int) -> Path:
    """Return the folder of ``run_id``'s checkpoints (it may not exist)."""
    _check_id(run_id, "run_id")
    return Path(checkpoint_dir) / f"run-{run_id}"


def checkpoint_path(checkpoint_dir: str | os.PathLike[str], run_id: int, round: int) -> Path:
    """Return the file of ``run_id``'s checkpoint after ``round`` (it may not exist)."""
    _check_id(round, "round")
    return run_dir(checkpoint_dir, run_id) / f"round-{round}.safetensors"


def save_checkpoint(
    checkpoint_dir: str | os.PathLike[str], run_id: int, round: int, frames: Sequence[Buffer]
) -> Path:
    """Write a checkpoint from codec payload frames, atomically; return its path.

    Args:
        checkpoint_dir: the checkpoints root, e.g. ``<state_dir>/checkpoints``.
        run_id: the run.
        round: the round the model is the result of.
        frames: the payload frames (``encode_content(...)[1]``, i.e. frames 1.. of
            a message): header frame, then one frame per tensor.

    Raises:
        ValueError: ``frames`` is empty or its first frame is not a safetensors header.
        OSError: the file could not be written (nothing is left under the final name).
    """
    if not frames:
        raise ValueError("save_checkpoint: no payload frames (the message holds no arrays)")
    first = _bytes_view(frames[0])
    if len(first) < _LEN or int.from_bytes(first[:_LEN], "little") != len(first) - _LEN:
        raise ValueError("save_checkpoint: frame 1 is not an 8-byte length + safetensors header")
    final = checkpoint_path(checkpoint_dir, run_id, round)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{round}-", suffix=".tmp", dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for frame in frames:
                out.write(_bytes_view(frame))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)
    size = final.stat().st_size
    log.info("checkpoint_saved", run_id=run_id, round=round, path=str(final), bytes=size)
    return final


def load_checkpoint(
    path: str | os.PathLike[str], limits: DecodeLimits | None = None
) -> ArrayRecord:
    """Read a checkpoint (any ``.safetensors`` file) into an ArrayRecord.

    The names are the tensor keys, in the order of their data in the file (the
    order they were saved in). The arrays are read-only views of one buffer
    holding the file; bfloat16 tensors come back as ``ml_dtypes.bfloat16``.

    Raises:
        DeserializationError: the file is not a valid safetensors file.
        OSError: the file could not be read.
    """
    data = memoryview(Path(path).read_bytes())
    if len(data) < _LEN:
        raise DeserializationError(f"{path}: {len(data)} bytes is too short for safetensors")
    end = _LEN + int.from_bytes(data[:_LEN], "little")
    if end > len(data):
        raise DeserializationError(f"{path}: header length {end - _LEN} exceeds the file size")
    frames = [data[:end]]
    try:
        header = json.loads(bytes(data[_LEN:end]))
        spans = sorted(
            (v["data_offsets"][0], v["data_offsets"][1])
            for k, v in header.items()
            if k != "__metadata__"
        )
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise DeserializationError(f"{path}: malformed safetensors header ({exc})") from None
    for begin, stop in spans:
        if not (isinstance(begin, int) and isinstance(stop, int) and 0 <= begin <= stop):
            raise DeserializationError(f"{path}: bad data_offsets [{begin}, {stop}]")
        frames.append(data[end + begin : end + stop])
    if spans and end + spans[-1][1] != len(data):
        raise DeserializationError(f"{path}: data does not end at the end of the file")
    try:
        arrays = parse_payload(frames, limits or DecodeLimits())
    except DeserializationError as exc:
        raise DeserializationError(f"{path}: {exc}") from None
    return ArrayRecord(arrays)


def list_checkpoints(checkpoint_dir: str | os.PathLike[str], run_id: int) -> list[tuple[int, Path]]:
    """Return ``(round, path)`` of ``run_id``'s checkpoints, oldest round first."""
    folder = run_dir(checkpoint_dir, run_id)
    if not folder.is_dir():
        return []
    found = ((_NAME.fullmatch(p.name), p) for p in folder.iterdir())
    return sorted((int(m.group(1)), p) for m, p in found if m is not None)


def latest_checkpoint(checkpoint_dir: str | os.PathLike[str], run_id: int) -> Path:
    """Return the path of ``run_id``'s checkpoint with the highest round.

    Raises:
        UnknownRunError: the run has no checkpoint.
    """
    found = list_checkpoints(checkpoint_dir, run_id)
    if not found:
        raise UnknownRunError(f"run {run_id} has no checkpoint under {checkpoint_dir}")
    return found[-1][1]


def prune_checkpoints(
    checkpoint_dir: str | os.PathLike[str], run_id: int, keep_last: int
) -> list[Path]:
    """Delete all but the ``keep_last`` newest checkpoints of a run (0 keeps all).

    Leftover temporaries of interrupted saves are deleted too, whatever ``keep_last``.

    Returns:
        The files deleted.

    Raises:
        ValueError: ``keep_last`` is negative.
    """
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
        raise ValueError(f"keep_last must be an int >= 0 (0 keeps all), got {keep_last!r}")
    folder = run_dir(checkpoint_dir, run_id)
    if not folder.is_dir():
        return []
    doomed = [p for p in folder.iterdir() if p.name.startswith(_TMP_PREFIX)]
    if keep_last:
        doomed += [p for _, p in list_checkpoints(checkpoint_dir, run_id)[:-keep_last]]
    for path in doomed:
        path.unlink(missing_ok=True)
    if doomed:
        _fsync_dir(folder)
        log.info("checkpoints_pruned", run_id=run_id, deleted=len(doomed), keep_last=keep_last)
    return doomed


def _bytes_view(frame: Buffer) -> memoryview:
    """Return a flat byte view of a frame (bytes, bytearray, memoryview or uint8 array)."""
    view = memoryview(frame.data if isinstance(frame, np.ndarray) else frame)
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _check_id(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be an int >= 0, got {value!r}")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
