"""Client-side DP mods (Flower's ``fixedclipping_mod`` and ``adaptiveclipping_mod``).

Use them in a ClientApp under the client-side DP wrappers::

    app = ClientApp(mods=[fixedclipping_mod])

They read the bound from the train config (``"clipping_norm"``), call the
handler, and clip the reply's update relative to the arrays received; the
adaptive one also adds ``norm_bit`` (1 if it clipped) to the reply's metrics.
A message that does not fit (not one ArrayRecord, no bound, other array names)
gets an error reply, as in Flower. NumPy only: nodes import no Numba.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from fedzero.core import ArrayRecord, Context, Error, ErrorCode, Message, RecordDict

from ._privacy import KEY_CLIPPING_NORM, KEY_NORM_BIT, clip_arrays

log = structlog.get_logger(__name__)

CallNext = Callable[[Message, Context], Message]


def _refuse(msg: Message, mod: str, reason: str) -> Message:
    log.error("mod_failed", mod=mod, reason=reason)
    return Message(Error(ErrorCode.REJECTED, f"{mod}: {reason}"), reply_to=msg)


def _clip_reply(
    msg: Message, context: Context, call_next: CallNext, mod: str
) -> tuple[Message, bool] | Message:
    """Call the handler and clip its reply; an error reply if anything does not fit."""
    if len(msg.content.array_records) != 1 or len(msg.content.config_records) != 1:
        return _refuse(msg, mod, "expects exactly one ArrayRecord and one ConfigRecord")
    config = next(iter(msg.content.config_records.values()))
    norm = config.get(KEY_CLIPPING_NORM)
    if isinstance(norm, bool) or not isinstance(norm, int | float) or not norm > 0:
        return _refuse(
            msg, mod, f"needs a positive {KEY_CLIPPING_NORM!r} in the config (use the DP wrapper)"
        )
    sent = next(iter(msg.content.array_records.values()))
    sent = ArrayRecord({k: v.copy() for k, v in sent.items()})  # the handler may write in place
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    if len(reply.content.array_records) != 1:
        return _refuse(msg, mod, "the reply must hold exactly one ArrayRecord")
    key, arrays = next(iter(reply.content.array_records.items()))
    if list(arrays.keys()) != list(sent.keys()):
        return _refuse(msg, mod, "the reply's arrays are not the ones received")
    clipped, was_clipped = clip_arrays(arrays, sent, float(norm))
    content = RecordDict({k: (clipped if k == key else v) for k, v in reply.content.items()})
    return Message.from_parts(reply.metadata, content, None), was_clipped


def fixedclipping_mod(msg: Message, context: Context, call_next: CallNext) -> Message:
    """Clip a train reply's update to the ``clipping_norm`` the server sent."""
    if msg.metadata.message_type.split(".")[0] != "train":
        return call_next(msg, context)
    out = _clip_reply(msg, context, call_next, "fixedclipping_mod")
    return out if isinstance(out, Message) else out[0]


def adaptiveclipping_mod(msg: Message, context: Context, call_next: CallNext) -> Message:
    """Clip a train reply's update and report ``norm_bit`` (1: it was clipped)."""
    if msg.metadata.message_type.split(".")[0] != "train":
        return call_next(msg, context)
    out = _clip_reply(msg, context, call_next, "adaptiveclipping_mod")
    if isinstance(out, Message):
        return out
    reply, was_clipped = out
    metrics = list(reply.content.metric_records.values())
    if len(metrics) != 1:
        return _refuse(msg, "adaptiveclipping_mod", "the reply must hold exactly one MetricRecord")
    metrics[0][KEY_NORM_BIT] = int(was_clipped)
    return reply
