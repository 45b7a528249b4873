"""Every string a peer sends must be Unicode scalar values, on every endpoint.

A lone surrogate (``"\\ud800"``, legal as a JSON escape) used to kill the link
when the value was echoed, logged or stored. The sweep puts one in every string
field (and in every key and value of every object field) of every message kind
of the protocol's schemas, on the fleet, app and control endpoints: each is
refused at parse time, and the link keeps serving.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from fedzero.core import ErrorCode, Grid
from fedzero.core.wire import KINDS, control
from fedzero.link import Link
from tests.helpers import link_config
from tests.link.test_hostile_fleet import peer, recv_until

pytestmark = pytest.mark.timeout(300)

BAD = "\ud800"
_DEFAULTS = {"int": 1, "num": 1.0, "str": "s", "dict": {}, "list": [], "bool": False}
_METADATA = {
    "run_id": 1,
    "message_id": "a" * 32,
    "src_node_id": 1,
    "dst_node_id": 0,
    "reply_to_message_id": "b" * 32,
    "group_id": "1",
    "message_type": "train",
    "ttl": 60.0,
    "created_at": 1.0,
}


def _valid(kind: str) -> dict[str, Any]:
    return {name: _DEFAULTS[spec.rstrip("?")] for name, spec in KINDS[kind].items()}


def _poisoned(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, fields)`` with one string of ``kind``'s fields made a lone surrogate."""
    for name, spec in KINDS[kind].items():
        base = spec.rstrip("?")
        if base == "str":
            yield name, {**_valid(kind), name: BAD}
        elif base == "dict":
            yield f"{name} key", {**_valid(kind), name: {BAD: 1}}
            yield f"{name} value", {**_valid(kind), name: {"k": [BAD]}}
        elif base == "list":
            yield f"{name} item", {**_valid(kind), name: [BAD]}
    if kind in ("message", "push"):
        for field in ("message_id", "reply_to_message_id", "group_id", "message_type"):
            yield f"metadata.{field}", {**_valid(kind), "metadata": {**_METADATA, field: BAD}}
        metrics = {"key": "m", "type": "metric", "items": {BAD: 1}}
        yield "content", {**_valid(kind), "metadata": _METADATA, "content": [metrics]}


CASES = [(kind, where, fields) for kind in KINDS for where, fields in _poisoned(kind)]


@pytest.fixture(scope="module")
def link() -> Iterator[Link]:
    started = Link(link_config()).start()
    yield started
    started.stop()


@pytest.mark.parametrize("endpoint", ["fleet", "app", "control"])
def test_a_lone_surrogate_anywhere_is_refused_on_every_endpoint(
    zmq_context: zmq.Context[Any], link: Link, endpoint: str
) -> None:
    address = getattr(link, f"{endpoint}_endpoint")
    sock = peer(zmq_context, address)
    assert len(CASES) >= 50  # every kind with a string field, as the schemas say
    for kind, where, fields in CASES:
        frame = json.dumps({"v": 1, "kind": kind, **fields}).encode("ascii")  # keeps \ud800
        assert b"\\ud800" in frame
        sock.send(frame)
        refused = recv_until(sock, "refused")
        assert refused["code"] == ErrorCode.MALFORMED, (kind, where, refused)
        assert "surrogate" in refused["reason"], (kind, where, refused)
    sock.close(linger=0)
    _still_serving(zmq_context, link)


def _still_serving(ctx: zmq.Context[Any], link: Link) -> None:
    cli = peer(ctx, link.control_endpoint)
    cli.send_multipart(control("list_nodes"))
    assert recv_until(cli, "node_list")["nodes"] == []
    cli.close(linger=0)
    with Grid(link.app_endpoint) as grid:
        assert grid.get_node_ids(timeout=0) == []
