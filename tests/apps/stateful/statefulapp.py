"""Test app for per-run workers: counts calls in context.state; can crash or raise.

The task's ConfigRecord "config" may hold ``crash`` (the process exits with code 3
at once), ``raise`` (the handler raises). Every reply carries the arrays + 1 and
metrics: ``calls`` (this Context's count), ``pid``, ``numba`` (1 if Numba is
imported in this process), ``node_id``, ``lr`` (from the run config) and
``zero_copy`` (1 if the received arrays are views, not copies).
"""

from __future__ import annotations

import os
import sys

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


@client.train()
def train(msg: Message, context: Context) -> Message:
    config = msg.content.config_records.get("config", {})
    counter = context.state.setdefault("counter", MetricRecord({"calls": 0}))
    counter["calls"] += 1
    if config.get("crash"):
        os._exit(3)
    if config.get("raise"):
        raise RuntimeError("asked to raise")
    received = msg.content.array_records.get("arrays", {})
    zero_copy = all(not a.flags.owndata for a in received.values())  # views of the frames
    arrays = {k: v + 1 for k, v in received.items()}
    metrics = MetricRecord(
        {
            "calls": counter["calls"],
            "pid": os.getpid(),
            "numba": int("numba" in sys.modules),
            "node_id": context.node_id,
            "lr": float(context.run_config.get("lr", 0.0)),
            "zero_copy": int(zero_copy),
        }
    )
    return msg.create_reply(RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics}))


@server.main()
def main(grid, context):  # type: ignore[no-untyped-def]
    grid.get_node_ids(min_nodes=1)
