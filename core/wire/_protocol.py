"""The conversation on top of the codec: control kinds and their fields.

Every ZeroMQ message between fedzero peers starts with a JSON header frame with
``"v"`` and ``"kind"``. Kind ``"message"`` is a :class:`Message` (see
:mod:`._codec`); the others are small control messages, listed in
:data:`KINDS` with their required fields, and documented in PROTOCOL.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from .._errors import DeserializationError
from ._header import PROTOCOL_VERSION, as_memoryview, decode_header
from ._json import INT_MAX, dumps_strict
from ._limits import DecodeLimits

# Field types: "int" (non-negative, < 2**63), "num" (finite int or float), "str",
# "dict", "list", "int?" (int or null), "bool".
KINDS: Final[dict[str, dict[str, str]]] = {
    # node -> link
    "hello": {"node_id": "int?", "node_config": "dict", "version": "str", "session": "str?"},
    "ping": {},
    "credit_request": {"reply_to": "str", "nbytes": "int"},
    "bye": {"reason": "str"},
    "get_bundle": {"hash": "str"},
    "bundle": {"hash": "str"},  # link -> node, + one frame: the bundle
    # link -> node
    "welcome": {
        "node_id": "int",
        "heartbeat_interval": "num",
        "heartbeat_timeout": "num",
        "max_message_bytes": "int",
        "credit_threshold": "int",
        "session": "str",
    },
    "pong": {},
    "run": {"run_id": "int", "run_config": "dict", "bundle": "str?"},
    "run_end": {"run_id": "int"},
    "credit_grant": {"reply_to": "str"},
    "reregister": {"reason": "str"},
    "refused": {"code": "int", "reason": "str", "reply_to": "str?"},
    # ServerApp -> link
    "app_hello": {"run_id": "int?", "run_config": "dict", "version": "str", "secret": "str?"},
    "get_nodes": {"min_nodes": "int", "timeout": "num"},
    "report": {"round": "int", "metrics": "dict"},
    "push": {"metadata": "dict", "content": "list", "dst": "list", "aggregate": "dict?"},
    "app_bye": {},
    "ack": {"message_ids": "list"},
    # link -> ServerApp
    "app_welcome": {"run_id": "int", "run_config": "dict"},
    "nodes": {"node_ids": "list"},
    "message": {},  # a Message: validated by fedzero.core.decode
    # CLI -> link (control endpoint), and the answers
    "submit_run": {"app": "dict", "run_config": "dict"},  # + one frame: the bundle
    "submitted": {"run_id": "int"},
    "list_runs": {"limit": "int"},
    "runs": {"runs": "list"},
    "logs": {"run_id": "int", "since_id": "int", "follow": "bool"},
    "log_lines": {"run_id": "int", "events": "list", "done": "bool"},
    "stop_run": {"run_id": "int"},
    "stopped": {"run_id": "int", "status": "str"},
    "list_nodes": {},
    "sync": {},
    "synced": {"committed": "int"},
    "node_list": {"nodes": "list"},
}

ENDPOINT_KINDS: Final[dict[str, frozenset[str]]] = {
    "fleet": frozenset({"hello", "ping", "credit_request", "bye", "get_bundle", "message"}),
    "app": frozenset({"app_hello", "ping", "get_nodes", "report", "push", "ack", "app_bye"}),
    "control": frozenset({"submit_run", "list_runs", "logs", "stop_run", "list_nodes", "sync"}),
}
"""The kinds each of the link's endpoints accepts (the rest of :data:`KINDS` go out)."""

RUN_SECRET_ENV: Final = "FEDZERO_RUN_SECRET"  # noqa: S105 - a variable's name
"""The environment variable in which the link's exec service hands a ServerApp
process the secret of its run (sent as ``app_hello.secret``)."""

PEER_VERSION: Final = "fedzero/1"
"""What a node's ``hello`` and a ServerApp's ``app_hello`` send as ``version``."""


def _check(kind: str, name: str, spec: str, value: Any) -> None:
    optional = spec.endswith("?")
    base = spec.rstrip("?")
    if optional and value is None:
        return
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT_MAX,
        "num": isinstance(value, int | float) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "dict": isinstance(value, dict),
        "list": isinstance(value, list),
        "bool": isinstance(value, bool),
    }[base]
    if not ok:
        raise DeserializationError(f"frame 0: {kind}.{name} must be {spec}, got {value!r:.40}")


def parse_envelope(
    frames: Sequence[object], limits: DecodeLimits | None = None
) -> tuple[str, dict[str, Any], list[memoryview]]:
    """Parse frame 0 of any fedzero message and check the kind's required fields.

    Returns:
        ``(kind, header, views)`` where ``views`` are the frames as memoryviews.

    Raises:
        DeserializationError: malformed header, unknown kind, or missing/mistyped
            fields.
    """
    if not frames:
        raise DeserializationError("no frames")
    views = [as_memoryview(f, i) for i, f in enumerate(frames)]
    header = decode_header(views[0], limits or DecodeLimits())
    kind = header["kind"]
    spec = KINDS.get(kind)
    if spec is None:
        raise DeserializationError(f"frame 0: unknown kind {kind!r:.40}")
    for name, field_spec in spec.items():
        if name not in header and not field_spec.endswith("?"):
            raise DeserializationError(f"frame 0: {kind} needs field {name!r}")
        _check(kind, name, field_spec, header.get(name))
    if kind not in ("message", "push", "submit_run", "bundle") and len(views) != 1:
        raise DeserializationError(f"{kind}: expected 1 frame, got {len(views)}")
    return kind, header, views


def control(kind: str, **fields: Any) -> list[bytes]:
    """Encode a control message of ``kind`` as its one frame."""
    if kind not in KINDS or kind == "message":
        raise ValueError(f"unknown control kind {kind!r}")
    header = {"v": PROTOCOL_VERSION, "kind": kind, **fields}
    return [dumps_strict(header)]
