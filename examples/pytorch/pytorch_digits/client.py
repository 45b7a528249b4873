"""ClientApp: load the global weights zero-copy, train locally, send the state_dict back."""

from __future__ import annotations

from fedzero.core import ArrayRecord, ClientApp, Context, Message, MetricRecord, RecordDict
from pytorch_digits.task import Net, load_partition, train

app = ClientApp()


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    net = Net()
    # The received arrays are views of the network buffers; load_state_dict copies them in.
    net.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    x, y = load_partition(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )
    cfg = context.run_config
    loss = train(
        net, x, y, int(cfg["local-epochs"]), float(cfg["learning-rate"]), int(cfg["batch-size"])
    )
    # ArrayRecord(net) shares memory with the model's tensors: no copy before encoding.
    metrics = MetricRecord({"train-loss": loss, "num-examples": len(y)})
    return msg.create_reply(RecordDict({"arrays": ArrayRecord(net), "metrics": metrics}))
