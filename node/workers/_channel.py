"""The agent's end of the agent <-> worker protocol: one ROUTER on a private ipc path.

:class:`WorkerChannel` binds the ROUTER in a private temporary directory, sends
the control frames of :mod:`._protocol` (``init``, ``update``, ``task``,
``stop``), reads what workers send, and turns a worker's ``reply`` into a
:class:`WorkerReply` for the link (or an error reply, when it is not a valid
answer to the task). It is used from the agent's IO thread only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from fedzero.core import (
    Context,
    DecodeLimits,
    DeserializationError,
    Error,
    ErrorCode,
    FedzeroError,
    Message,
    decode,
    encode,
)
from fedzero.core.runtime import drain, zmq_errors
from fedzero.core.wire import frames_nbytes

from ._processes import Task, WorkerProc
from ._protocol import control_frame, parse_control
from ._shm import SHM_THRESHOLD


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerReply:
    """A reply to send to the link: the decoded message and the frames to forward.

    Attributes:
        message: the reply, decoded (its arrays are views of ``frames``).
        frames: the encoded reply; send them with ``copy=False``. Payload frames
            a worker sent through shared memory are read-only uint8 views of its
            segment, which stays unchanged until they are all gone.
    """

    message: Message
    frames: list[Any]

    @classmethod
    def error(cls, task: Task, reason: str) -> WorkerReply:
        """A ``CLIENT_APP_RAISED`` error reply to ``task``."""
        return cls.of(task.message.create_error_reply(Error(ErrorCode.CLIENT_APP_RAISED, reason)))

    @classmethod
    def of(cls, reply: Message) -> WorkerReply:
        """A reply made by the node itself (encoded here)."""
        return cls(reply, encode(reply))

    @property
    def reply_to(self) -> str:
        """The id of the task this reply answers."""
        return self.message.metadata.reply_to_message_id

    @property
    def nbytes(self) -> int:
        """Total size of the frames (for the link's upload credit)."""
        return frames_nbytes(self.frames)


Handler = Callable[[bytes, dict[str, Any], list[zmq.Frame]], object]
"""Called with a worker's routing identity, its control header and the frames after it."""


class WorkerChannel:
    """The ROUTER the workers connect to.

    Args:
        ctx: the zmq context to make the ROUTER in.
        socket_dir: where to make the private ipc directory (None: the temp dir).
        limits: decode limits for the workers' replies.

    Raises:
        ConfigurationError: the private ipc endpoint cannot be bound.
    """

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        socket_dir: str | Path | None,
        limits: DecodeLimits | None,
    ) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="fzw-", dir=socket_dir))
        self.endpoint = f"ipc://{self._dir}/workers"
        self._limits = limits
        router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unreachable worker is an error
        router.setsockopt(zmq.SNDHWM, 0)
        router.setsockopt(zmq.RCVHWM, 0)
        try:
            with zmq_errors("bind the worker endpoint", self.endpoint):
                router.bind(self.endpoint)
        except FedzeroError:
            router.close(linger=0)
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self.socket: zmq.Socket[bytes] = router

    def close(self) -> None:
        """Close the ROUTER and remove the private directory."""
        self.socket.close(linger=0)
        shutil.rmtree(self._dir, ignore_errors=True)

    def receive(self, handle: Handler) -> None:
        """Hand every message waiting on the ROUTER to ``handle`` (without blocking).

        A control frame that does not parse becomes a ``fatal`` header saying so;
        a message without one is given an empty header.
        """

        def parse(frames: list[zmq.Frame]) -> None:
            header: dict[str, Any] = {}
            if len(frames) >= 2:
                try:
                    header = parse_control(frames[1])
                except ValueError as exc:  # DeserializationError, or a frame that is no buffer
                    header = {"op": "fatal", "reason": f"bad control frame: {exc}"}
            handle(frames[0].bytes, header, frames[2:])

        drain(self.socket, parse)

    def init(self, proc: WorkerProc, ctx: Context, app_dir: Path) -> None:
        """Answer the worker's hello: its run, ids, configs and app folder."""
        init = control_frame(
            "init",
            run_id=ctx.run_id,
            node_id=ctx.node_id,
            node_config=ctx.node_config,
            run_config=ctx.run_config,
            app_dir=str(app_dir),
        )
        self.socket.send_multipart([proc.identity, init])
        proc.synced = (ctx.node_id, dict(ctx.run_config))

    def send_task(self, proc: WorkerProc, task: Task, ctx: Context) -> None:
        """Hand ``task`` to the worker, after an ``update`` if its view of ``ctx`` is stale.

        Raises:
            zmq.ZMQError: the worker is unreachable (EHOSTUNREACH).
        """
        if proc.synced != (ctx.node_id, ctx.run_config):
            update = control_frame("update", node_id=ctx.node_id, run_config=ctx.run_config)
            self.socket.send_multipart([proc.identity, update])
            proc.synced = (ctx.node_id, dict(ctx.run_config))
        frames, fields = task.frames, {}
        if proc.shm is not None:
            if frames_nbytes(frames[1:]) >= SHM_THRESHOLD:  # one copy into the segment
                fields["shm"] = proc.shm.writer.write(frames[1:])
                frames = frames[:1]
            fields.update(proc.shm.bookkeeping())
        task_frame = control_frame("task", **fields)
        self.socket.send_multipart([proc.identity, task_frame, *frames], copy=False)

    def stop(self, proc: WorkerProc) -> None:
        """Ask the worker to exit after its current task (unreachable: nothing to ask)."""
        with contextlib.suppress(zmq.ZMQError):
            self.socket.send_multipart([proc.identity, control_frame("stop")])

    def reply(
        self, proc: WorkerProc, task: Task, header: dict[str, Any], payload: list[Any]
    ) -> WorkerReply:
        """The worker's answer to ``task``; an error reply if it is not a valid one."""
        meta = task.message.metadata
        try:
            shared = proc.shm.receive(header) if proc.shm is not None else None
            if shared is not None:
                payload = [*payload[:1], *shared]
            reply = decode(payload, limits=self._limits)
            if reply.metadata.reply_to_message_id != meta.message_id:
                raise DeserializationError("the reply answers another message")
        except DeserializationError as exc:
            reason = f"ClientApp worker for run {meta.run_id} sent a bad reply: {exc}"
            return WorkerReply.error(task, reason)
        return WorkerReply(reply, payload)
