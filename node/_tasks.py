"""Task handling: one message through the run's ClientApp, every failure an error reply."""

from __future__ import annotations

import traceback

import structlog

from fedzero.core import ClientApp, Context, Error, ErrorCode, Message

log = structlog.get_logger(__name__)


def handle_message(app: ClientApp, msg: Message, ctx: Context) -> Message:
    """Call the ClientApp; turn every failure into an error reply."""
    meta = msg.metadata
    if app.handler_for(meta.message_type) is None:
        reason = f"no handler for {meta.message_type!r}; the app handles {app.message_types}"
        return msg.create_error_reply(Error(ErrorCode.UNSUPPORTED, reason))
    try:
        return app(msg, ctx)
    except Exception as exc:  # the app's failure must not take the node down
        log.error(
            "client_app_raised",
            run_id=meta.run_id,
            message_type=meta.message_type,
            error=repr(exc),
            traceback=traceback.format_exc(),
        )
        reason = f"{type(exc).__name__}: {exc}"
        return msg.create_error_reply(Error(ErrorCode.CLIENT_APP_RAISED, reason[:2000]))
