"""Test app: replies with every received array + 1; can be told to hang or fail."""

from __future__ import annotations

import threading

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
_forever = threading.Event()


@client.train()
def train(msg: Message, context: Context) -> Message:
    fifo = context.node_config.get("started-fifo")
    if fifo:  # tell the test, through a named pipe, that training has started
        with open(str(fifo), "w") as pipe:
            pipe.write("started\n")
    if context.node_config.get("work"):
        _forever.wait(float(context.node_config["work"]))  # simulated training time
    if context.node_config.get("hang"):
        _forever.wait()  # simulates a node stuck in training until it is killed
    if context.node_config.get("fail"):
        raise ValueError("this node is configured to fail")
    arrays = {k: v + 1 for k, v in msg.content.array_records["arrays"].items()}
    metrics = MetricRecord({"num-examples": int(context.node_config.get("examples", 1))})
    return msg.create_reply(RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics}))


@server.main()
def main(grid, context):  # type: ignore[no-untyped-def]
    nodes = grid.get_node_ids(min_nodes=1)
    import numpy as np

    content = RecordDict({"arrays": ArrayRecord({"w": np.zeros(4, np.float32)})})
    replies = grid.send_and_receive([grid.create_message(content, "train", n) for n in nodes])
    grid.report(1, {"replies": len(replies)})
