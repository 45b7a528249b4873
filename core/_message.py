"""Message, its Metadata, and the Error a failed message carries."""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from typing import Any, Final

from ._records import RecordDict

DEFAULT_TTL: Final = 43_200.0
"""Default time-to-live of a message in seconds (12 hours, as in Flower)."""

SERVER_NODE_ID: Final = 0
"""The node id that stands for the ServerApp (the link) as a message source."""

MAX_ID: Final = 2**63 - 1
"""Run and node ids are integers in ``[0, MAX_ID]`` (they fit SQLite's INTEGER)."""

_MESSAGE_TYPE = re.compile(r"(train|evaluate|query|system)(\.[A-Za-z0-9_\-]{1,64})?")


def validate_message_type(message_type: str) -> str:
    """Return ``message_type`` if valid, else raise ValueError.

    Valid types are ``"train"``, ``"evaluate"``, ``"query"``, ``"system"``, or one
    of them with a custom suffix such as ``"train.finetune"``.
    """
    if not isinstance(message_type, str) or not _MESSAGE_TYPE.fullmatch(message_type):
        raise ValueError(
            f"message_type {message_type!r} is invalid: use 'train', 'evaluate', 'query', "
            "or one of them with a suffix like 'train.finetune' (letters, digits, _ and -)"
        )
    return message_type


def new_message_id() -> str:
    """Return a fresh, random 128-bit message id as 32 hex digits."""
    return uuid.uuid4().hex


@dataclasses.dataclass(slots=True)
class Metadata:
    """Who a message is from and for, what it answers, and how long it lives.

    Attributes:
        run_id: the run this message belongs to.
        message_id: unique id of this message (32 hex digits).
        src_node_id: sender (:data:`SERVER_NODE_ID` for the ServerApp).
        dst_node_id: receiver (:data:`SERVER_NODE_ID` for replies to the ServerApp).
        reply_to_message_id: for a reply, the id of the message it answers; else ``""``.
        group_id: free-form grouping, e.g. the round number as a string.
        message_type: ``"train"``, ``"evaluate"``, ``"query"`` or a custom ``"train.x"``.
        ttl: time-to-live in seconds, counted from ``created_at``.
        created_at: Unix time (seconds) when the message was created.
    """

    run_id: int
    message_id: str
    src_node_id: int
    dst_node_id: int
    reply_to_message_id: str
    group_id: str
    message_type: str
    ttl: float
    created_at: float

    @property
    def expires_at(self) -> float:
        """Unix time after which the message must not be delivered."""
        return self.created_at + self.ttl

    def is_expired(self, now: float | None = None) -> bool:
        """Whether the TTL has run out at ``now`` (default: the current time)."""
        return (time.time() if now is None else now) >= self.expires_at


def _new_metadata(
    dst_node_id: int, message_type: str, ttl: float | None, group_id: str | None
) -> Metadata:
    """Metadata of a new (not reply) message, arguments checked."""
    validate_message_type(message_type)
    if isinstance(dst_node_id, bool) or not isinstance(dst_node_id, int):
        raise TypeError(f"dst_node_id must be an int, got {type(dst_node_id).__name__}")
    if not 0 <= dst_node_id <= MAX_ID:
        raise ValueError(f"dst_node_id {dst_node_id} is outside [0, 2**63-1]")
    ttl = DEFAULT_TTL if ttl is None else float(ttl)
    if not ttl > 0 or ttl == float("inf"):
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl}")
    return Metadata(
        run_id=0,
        message_id=new_message_id(),
        src_node_id=SERVER_NODE_ID,
        dst_node_id=dst_node_id,
        reply_to_message_id="",
        group_id="" if group_id is None else str(group_id),
        message_type=message_type,
        ttl=ttl,
        created_at=time.time(),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Error:
    """Why a message failed: a code (:class:`fedzero.core.ErrorCode`) and a reason."""

    code: int
    reason: str = ""


class MessageType:
    """The message types a ClientApp handles (Flower's ``MessageType``).

    ``MessageType.TRAIN`` is ``"train"``; a custom action is ``"train.<action>"``.
    """

    TRAIN: Final = "train"
    EVALUATE: Final = "evaluate"
    QUERY: Final = "query"
    SYSTEM: Final = "system"

    def __new__(cls) -> MessageType:
        """Refuse instantiation: the class is a namespace of constants."""
        raise TypeError(f"{cls.__name__} cannot be instantiated")


_INIT_FORMS = (
    "use Message(content, dst_node_id, message_type, *, ttl=, group_id=) for a new "
    "message, or Message(content, reply_to=msg) / Message(error, reply_to=msg) for a reply"
)


def _positional(
    args: tuple[object, ...],
    content: RecordDict | None,
    error: Error | None,
    dst_node_id: int | None,
    message_type: str | None,
) -> tuple[Any, Any, Any, Any]:
    """Merge Message()'s positional arguments into its keywords (each given once)."""
    if len(args) > 3:
        raise TypeError(f"Message() takes at most 3 positional arguments; {_INIT_FORMS}")
    first = args[0] if args else None
    named: list[Any] = [content, error, dst_node_id, message_type]
    slots = ([1] if isinstance(first, Error) else [0]) + [2, 3]
    for slot, value in zip(slots, args, strict=False):
        if named[slot] is not None or (slot < 2 and named[1 - slot] is not None):
            raise TypeError(f"Message(): an argument is given twice; {_INIT_FORMS}")
        named[slot] = value
    return named[0], named[1], named[2], named[3]


class Message:
    """A unit of communication between a ServerApp and a ClientApp.

    A message holds either content (a :class:`RecordDict`) or an :class:`Error`.
    The constructor takes Flower's forms::

        Message(content, dst_node_id, message_type, ttl=..., group_id=...)  # a new message
        Message(content, reply_to=msg, ttl=...)                             # a reply
        Message(error, reply_to=msg)                                        # an error reply

    (each argument also by keyword: ``Message(content=rd, message_type=MessageType.QUERY,
    dst_node_id=3)``). A reply takes its run, nodes, type and group from ``reply_to``
    and lives at most as long as ``reply_to`` has left.

    Args:
        content: the records to send.
        dst_node_id: the node that should receive the message.
        message_type: ``"train"``, ``"evaluate"``, ``"query"``, or ``"train.x"``-style.
        error: the error of an error reply.
        ttl: time-to-live in seconds (default :data:`DEFAULT_TTL`).
        group_id: free-form grouping, e.g. the round number.
        reply_to: the message this one answers.

    Raises:
        TypeError: arguments that match none of the forms above.
        ValueError: an invalid message type, node id or TTL.
    """

    __slots__ = ("_content", "_error", "metadata")

    def __init__(
        self,
        *args: object,
        dst_node_id: int | None = None,
        message_type: str | None = None,
        content: RecordDict | None = None,
        error: Error | None = None,
        ttl: float | None = None,
        group_id: str | None = None,
        reply_to: Message | None = None,
    ) -> None:
        content, error, dst_node_id, message_type = _positional(
            args, content, error, dst_node_id, message_type
        )
        if (content is None) == (error is None):
            raise TypeError(f"Message() needs content or an error (not both); {_INIT_FORMS}")
        if content is not None and not isinstance(content, RecordDict):
            raise TypeError(f"content must be a RecordDict, got {type(content).__name__}")
        if error is not None and not isinstance(error, Error):
            raise TypeError(f"error must be an Error, got {type(error).__name__}")
        if reply_to is not None:
            if dst_node_id is not None or message_type is not None or group_id is not None:
                raise TypeError(
                    f"a reply takes its dst_node_id, message_type and group_id from "
                    f"reply_to; {_INIT_FORMS}"
                )
            if not isinstance(reply_to, Message):
                raise TypeError(f"reply_to must be a Message, got {type(reply_to).__name__}")
            self.metadata = reply_to._reply_metadata(ttl)
        else:
            if error is not None or dst_node_id is None or message_type is None:
                raise TypeError(f"Message(): {_INIT_FORMS}")
            self.metadata = _new_metadata(dst_node_id, message_type, ttl, group_id)
        self._content = content
        self._error = error

    @classmethod
    def from_parts(
        cls, metadata: Metadata, content: RecordDict | None, error: Error | None
    ) -> Message:
        """Assemble a message from already-validated parts (used by the codec).

        Raises:
            ValueError: not exactly one of ``content`` and ``error`` is given.
        """
        if (content is None) == (error is None):
            raise ValueError("a message holds either content or an error")
        msg = cls.__new__(cls)
        msg.metadata = metadata
        msg._content = content
        msg._error = error
        return msg

    def has_content(self) -> bool:
        """Whether the message holds content (and not an error)."""
        return self._content is not None

    def has_error(self) -> bool:
        """Whether the message holds an error."""
        return self._error is not None

    @property
    def content(self) -> RecordDict:
        """The records of the message.

        Raises:
            ValueError: the message holds an error instead.
        """
        if self._content is None:
            raise ValueError(f"message holds an error, not content: {self._error}")
        return self._content

    @content.setter
    def content(self, value: RecordDict) -> None:
        if self._error is not None:
            raise ValueError("a message that holds an error cannot hold content")
        if not isinstance(value, RecordDict):
            raise TypeError(f"content must be a RecordDict, got {type(value).__name__}")
        self._content = value

    @property
    def error(self) -> Error:
        """The error of the message.

        Raises:
            ValueError: the message holds content instead.
        """
        if self._error is None:
            raise ValueError("message holds content, not an error")
        return self._error

    def _reply_metadata(self, ttl: float | None) -> Metadata:
        remaining = max(0.0, self.metadata.expires_at - time.time())
        return Metadata(
            run_id=self.metadata.run_id,
            message_id=new_message_id(),
            src_node_id=self.metadata.dst_node_id,
            dst_node_id=self.metadata.src_node_id,
            reply_to_message_id=self.metadata.message_id,
            group_id=self.metadata.group_id,
            message_type=self.metadata.message_type,
            ttl=remaining if ttl is None else min(float(ttl), remaining),
            created_at=time.time(),
        )

    def create_reply(self, content: RecordDict, ttl: float | None = None) -> Message:
        """Return a reply to this message holding ``content``.

        The reply's TTL is the original's remaining TTL, or ``ttl`` if smaller.
        """
        return Message(content, reply_to=self, ttl=ttl)

    def create_error_reply(self, error: Error, ttl: float | None = None) -> Message:
        """Return a reply to this message that reports ``error``."""
        return Message(error, reply_to=self, ttl=ttl)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.metadata == other.metadata
            and self._content == other._content
            and self._error == other._error
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        body = f"content={self._content!r}" if self._error is None else f"error={self._error!r}"
        return f"Message(metadata={self.metadata!r}, {body})"
