"""Test app for the shared-memory path: received arrays must be read-only views.

The task's ConfigRecord "config" may hold ``keep`` (the handler keeps the received
arrays in a module-level list), ``echo_kept`` (it replies with the arrays it kept
first instead of the received ones + 1) and ``hang`` (it never returns). Every
reply's MetricRecord "metrics" says whether writing into a received array, or
making it writeable, failed (``readonly``) and whether it is a view (``view``).
"""

from __future__ import annotations

import threading

import numpy as np

from fedzero.core import (
    ArrayRecord,
    ClientApp,
    Context,
    Message,
    MetricRecord,
    RecordDict,
    ServerApp,
)

client = ClientApp()
server = ServerApp()
KEPT: list[dict[str, np.ndarray]] = []


def _readonly(arr: np.ndarray) -> bool:
    try:
        arr[...] = 0
    except ValueError:
        pass
    else:
        return False
    try:
        arr.flags.writeable = True
    except ValueError:
        return True
    return False


@client.train()
def train(msg: Message, context: Context) -> Message:
    config = msg.content.config_records.get("config", {})
    if config.get("hang"):
        threading.Event().wait()
    received = dict(msg.content.array_records["arrays"])
    if config.get("keep"):
        KEPT.append(received)
    metrics = MetricRecord(
        {
            "readonly": int(all(_readonly(a) for a in received.values())),
            "view": int(all(not a.flags.owndata for a in received.values())),
        }
    )
    out = dict(KEPT[0]) if config.get("echo_kept") else {k: v + 1 for k, v in received.items()}
    return msg.create_reply(RecordDict({"arrays": ArrayRecord(out), "metrics": metrics}))


@server.main()
def main(grid, context):  # type: ignore[no-untyped-def]
    grid.get_node_ids(min_nodes=1)
