"""The ClientApp: load the global weights, train on this node's data, reply."""

from __future__ import annotations

from fedzero.core import ArrayRecord, ClientApp, Context, Message, MetricRecord, RecordDict
from pytorch_app.task import Net, evaluate, load_partition, train

app = ClientApp()


def _net(msg: Message) -> Net:
    net = Net()
    # The received arrays are read-only views of the network buffers;
    # load_state_dict copies them into the model.
    net.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    return net


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    """Train the received model on this node's data; reply with the new weights."""
    net = _net(msg)
    x, y = load_partition(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )
    cfg = context.run_config
    loss = train(
        net, x, y, int(cfg["local-epochs"]), float(cfg["learning-rate"]), int(cfg["batch-size"])
    )
    # ArrayRecord(net) shares memory with the model's tensors: no copy before sending.
    metrics = MetricRecord({"loss": loss, "num-examples": len(y)})
    return msg.create_reply(RecordDict({"arrays": ArrayRecord(net), "metrics": metrics}))


@app.evaluate()
def evaluate_fn(msg: Message, context: Context) -> Message:
    """Evaluate the received model on this node's data."""
    x, y = load_partition(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )
    loss, accuracy = evaluate(_net(msg), x, y)
    metrics = MetricRecord({"loss": loss, "accuracy": accuracy, "num-examples": len(y)})
    return msg.create_reply(RecordDict({"metrics": metrics}))
