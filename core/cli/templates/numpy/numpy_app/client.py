"""The ClientApp: trains on this node's data, evaluates on it."""

from __future__ import annotations

import numpy as np

from fedzero.core import ArrayRecord, ClientApp, Context, Message, MetricRecord, RecordDict
from numpy_app.task import evaluate, load_partition, train

app = ClientApp()


def _data(context: Context) -> tuple[np.ndarray, np.ndarray]:
    return load_partition(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    """Train the received model on this node's data; reply with the new model."""
    x, y = _data(context)
    cfg = context.run_config
    model, mse = train(
        dict(msg.content.array_records["arrays"]),
        x,
        y,
        epochs=int(cfg["local-epochs"]),
        lr=float(cfg["learning-rate"]),
        batch_size=int(cfg["batch-size"]),
        seed=int(msg.metadata.group_id or 0) * 1000 + int(context.node_config["partition-id"]),
    )
    metrics = MetricRecord({"mse": mse, "num-examples": len(y)})
    return msg.create_reply(RecordDict({"arrays": ArrayRecord(model), "metrics": metrics}))


@app.evaluate()
def evaluate_fn(msg: Message, context: Context) -> Message:
    """Evaluate the received model on this node's data."""
    x, y = _data(context)
    mse, r2 = evaluate(dict(msg.content.array_records["arrays"]), x, y)
    metrics = MetricRecord({"mse": mse, "r2": r2, "num-examples": len(y)})
    return msg.create_reply(RecordDict({"metrics": metrics}))
