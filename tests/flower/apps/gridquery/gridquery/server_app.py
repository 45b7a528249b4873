"""gridquery: the ServerApp sends QUERY messages itself and combines the replies."""

import json
import math
import time
from logging import INFO

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    features = str(context.run_config["selected-features"]).split(",")
    min_nodes = int(context.run_config["min-nodes"])
    # Flower's Grid has no blocking wait for nodes: poll, as federated-analytics
    # does, but within a deadline, so a missing node is an error, not a hang.
    deadline = time.monotonic() + 300.0
    node_ids = sorted(grid.get_node_ids())
    while len(node_ids) < min_nodes:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(node_ids)} of {min_nodes} nodes connected")
        time.sleep(0.5)
        node_ids = sorted(grid.get_node_ids())
    log(INFO, "querying %s nodes: %s", len(node_ids), node_ids)
    edges = np.linspace(0.0, 200.0, 9)
    content = RecordDict(
        {
            "config": ConfigRecord({"selected_features": features}),
            "bins": ArrayRecord([edges]),
        }
    )
    messages = [
        Message(content=content, message_type=MessageType.QUERY, dst_node_id=node_id)
        for node_id in node_ids
    ]
    replies = [r for r in grid.send_and_receive(messages) if not r.has_error()]
    totals: dict[str, float] = {}
    hist = np.zeros((len(features), len(edges) - 1), dtype=np.int64)
    for reply in replies:
        for key, value in reply.content["query_results"].items():
            totals[key] = totals.get(key, 0.0) + value
        counts = reply.content["hist"].to_numpy_ndarrays()
        for i, c in enumerate(counts):
            c *= 1  # writable, as in Flower
            hist[i] += c
    stats = {}
    for f in features:
        n = totals[f"{f}_count"]
        mean = totals[f"{f}_sum"] / n
        stats[f] = {
            "count": n,
            "mean": mean,
            "std": math.sqrt(totals[f"{f}_sum_sqd"] / n - mean**2),
            "hist": hist[features.index(f)].tolist(),
        }
    failing = [
        Message(RecordDict(), node_id, f"{MessageType.QUERY}.fail") for node_id in node_ids[:1]
    ]
    errors = [r.error.code for r in grid.send_and_receive(failing) if r.has_error()]
    figures = {"replies": len(replies), "stats": stats, "error_replies": len(errors)}
    log(INFO, "figures: %s", json.dumps(figures))
    if context.run_config["result-file"]:
        with open(str(context.run_config["result-file"]), "w", encoding="utf-8") as f:
            json.dump(figures, f)
