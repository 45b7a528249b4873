"""gridquery: the ClientApp answers queries with statistics of its local data."""

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


def local_data(partition_id: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(100 + partition_id)
    n = 50 + 10 * partition_id
    return {"age": rng.uniform(20, 80, n), "height": rng.normal(170 + partition_id, 8, n)}


@app.query()
def query(msg: Message, context: Context) -> Message:
    data = local_data(int(context.node_config["partition-id"]))
    features: list[str] = msg.content["config"]["selected_features"]
    edges = msg.content["bins"].to_numpy_ndarrays()[0]
    edges[-1] += 1e-9  # Flower gives writable arrays: widen the last bin in place
    metrics = {}
    hists = []
    for feature in features:
        values = data[feature]
        metrics[f"{feature}_sum"] = float(values.sum())
        metrics[f"{feature}_sum_sqd"] = float((values**2).sum())
        metrics[f"{feature}_count"] = len(values)
        hists.append(np.histogram(values, bins=edges)[0].astype(np.int64))
    content = RecordDict({"query_results": MetricRecord(metrics), "hist": ArrayRecord(hists)})
    return Message(content, reply_to=msg)


@app.query("fail")
def fail(msg: Message, context: Context) -> Message:
    raise RuntimeError("this query always fails")
