"""Task handling: one message through the run's ClientApp, every failure an error reply.

A task is also bounded in time (:func:`task_deadline`): by its TTL, and by a
task timeout, the number of seconds under the key ``task-timeout``
(:data:`TASK_TIMEOUT_KEY`) in one of the task's ConfigRecords (e.g. a strategy's
``train_config``) or, failing that, in the run config; the timeout counts from
the moment the node hands the task to the ClientApp (a worker process's start-up
is not counted; loading the app, for the first task of a worker, is). A
ClientApp still busy at the deadline is ended by the node (its worker process
killed, or its thread abandoned) and the task is answered with
``MESSAGE_EXPIRED``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from collections.abc import Mapping
from typing import Any, Final

import structlog

from fedzero.core import ClientApp, Context, Error, ErrorCode, Message

log = structlog.get_logger(__name__)

TASK_TIMEOUT_KEY: Final = "task-timeout"
"""Seconds a ClientApp may take on one task (in a task's ConfigRecord, or the run config)."""


def handle_message(app: ClientApp, msg: Message, ctx: Context) -> Message:
    """Call the ClientApp; turn every failure into an error reply."""
    meta = msg.metadata
    if app.handler_for(meta.message_type) is None:
        reason = f"no handler for {meta.message_type!r}; the app handles {app.message_types}"
        return msg.create_error_reply(Error(ErrorCode.UNSUPPORTED, reason))
    try:
        return app(msg, ctx)
    except Exception as exc:  # the app's failure must not take the node down
        return failure_reply(msg, ErrorCode.CLIENT_APP_RAISED, "client_app_raised", exc)


def failure_reply(
    msg: Message, code: ErrorCode, event: str, exc: BaseException, prefix: str = ""
) -> Message:
    """Log ``exc`` with its traceback as ``event``; return the error reply to ``msg`` naming it."""
    meta = msg.metadata
    log.error(
        event,
        run_id=meta.run_id,
        message_id=meta.message_id,
        message_type=meta.message_type,
        error=repr(exc),
        traceback=traceback.format_exc(),
    )
    reason = f"{prefix}{type(exc).__name__}: {exc}"
    return msg.create_error_reply(Error(code, reason[:2000]))


@dataclasses.dataclass(frozen=True, slots=True)
class Deadline:
    """When a task must be answered (``time.monotonic()``), and what set that time.

    Attributes:
        at: the monotonic time of the deadline.
        why: the limit, for people (``"its task-timeout of 30 s"``).
        ttl: whether the TTL set it (the link has then answered the task itself).
        timeout: the task timeout still to apply from the start (:meth:`started`).
    """

    at: float
    why: str
    ttl: bool
    timeout: float | None = None

    def started(self, now: float) -> Deadline:
        """The deadline once the ClientApp got the task at monotonic time ``now``."""
        if self.timeout is None or now + self.timeout >= self.at:
            return self
        return Deadline(now + self.timeout, f"its {TASK_TIMEOUT_KEY} of {self.timeout:g} s", False)

    def error(self, msg: Message) -> Message:
        """The error reply to ``msg`` once the deadline has passed."""
        reason = f"the ClientApp did not answer within {self.why}; the node ended it"
        return msg.create_error_reply(Error(ErrorCode.MESSAGE_EXPIRED, reason))


def task_timeout(msg: Message, run_config: Mapping[str, Any]) -> float | None:
    """The task's ``task-timeout`` in seconds (its ConfigRecords first, then the run config)."""
    values = [rec[TASK_TIMEOUT_KEY] for rec in _config_records(msg) if TASK_TIMEOUT_KEY in rec]
    value = values[0] if values else run_config.get(TASK_TIMEOUT_KEY)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        log.warning(
            "task_timeout_ignored", value=repr(value)[:40], advice="a number of seconds > 0"
        )
        return None
    return float(value)


def task_deadline(msg: Message, run_config: Mapping[str, Any], now: float) -> Deadline:
    """The deadline of ``msg`` received at monotonic time ``now``.

    Its TTL; its timeout applies once the ClientApp has it (:meth:`Deadline.started`).
    """
    meta = msg.metadata
    at, why = now + meta.expires_at - time.time(), f"its TTL of {meta.ttl:g} s"
    return Deadline(at, why, ttl=True, timeout=task_timeout(msg, run_config))


def _config_records(msg: Message) -> list[Mapping[str, Any]]:
    return [] if msg.has_error() else list(msg.content.config_records.values())
