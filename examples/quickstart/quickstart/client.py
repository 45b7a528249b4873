"""The ClientApp: trains on this node's partition, evaluates on it."""

from __future__ import annotations

from fedzero.core import ArrayRecord, ClientApp, Context, Message, MetricRecord, RecordDict
from quickstart.task import evaluate, load_partition, train

app = ClientApp()


def _data(context: Context):  # type: ignore[no-untyped-def]
    return load_partition(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    x, y = _data(context)
    cfg = context.run_config
    model, loss = train(
        dict(msg.content.array_records["arrays"]),
        x,
        y,
        epochs=int(cfg["local-epochs"]),
        lr=float(cfg["learning-rate"]),
        batch_size=int(cfg["batch-size"]),
        seed=int(msg.metadata.group_id or 0),
    )
    metrics = MetricRecord({"loss": loss, "num-examples": len(y)})
    return msg.create_reply(RecordDict({"arrays": ArrayRecord(model), "metrics": metrics}))


@app.evaluate()
def evaluate_fn(msg: Message, context: Context) -> Message:
    x, y = _data(context)
    loss, accuracy = evaluate(dict(msg.content.array_records["arrays"]), x, y)
    metrics = MetricRecord({"loss": loss, "accuracy": accuracy, "num-examples": len(y)})
    return msg.create_reply(RecordDict({"metrics": metrics}))
