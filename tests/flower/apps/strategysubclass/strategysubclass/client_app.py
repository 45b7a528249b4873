"""The ClientApp: local gradient descent on the node's partition."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from strategysubclass.task import load_data, mse, train

app = ClientApp()


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    x, y = load_data(int(context.node_config["partition-id"]))
    w, b = msg.content["arrays"].to_numpy_ndarrays()
    config = msg.content["config"]
    w, b = train(w, b, x, y, float(config["lr"]), int(context.run_config["local-steps"]))
    metrics = MetricRecord({"num-examples": len(y), "loss": mse(w, b, x, y)})
    content = RecordDict({"arrays": ArrayRecord([w, b]), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_fn(msg: Message, context: Context) -> Message:
    x, y = load_data(int(context.node_config["partition-id"]))
    w, b = msg.content["arrays"].to_numpy_ndarrays()
    metrics = MetricRecord({"num-examples": len(y), "mse": mse(w, b, x, y)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
