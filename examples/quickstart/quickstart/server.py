"""The ServerApp: FedAvg over the nodes, evaluated centrally after every round."""

from __future__ import annotations

import numpy as np

from fedzero.core import ArrayRecord, ConfigRecord, Context, Grid, RecordDict, ServerApp
from quickstart.task import evaluate, initial_model, load_test_set

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    num_rounds = int(cfg["num-rounds"])
    node_ids = grid.get_node_ids(min_nodes=int(cfg.get("min-nodes", 1)))
    x_test, y_test = load_test_set()
    model = initial_model()
    for server_round in range(1, num_rounds + 1):
        # One content object for all nodes: the link receives it once and fans out.
        content = RecordDict(
            {"arrays": ArrayRecord(model), "config": ConfigRecord({"round": server_round})}
        )
        messages = [
            grid.create_message(content, "train", n, group_id=str(server_round)) for n in node_ids
        ]
        replies = [r for r in grid.send_and_receive(messages) if r.has_content()]
        if not replies:
            raise RuntimeError(f"round {server_round}: every node failed")
        weights = np.array(
            [r.content.metric_records["metrics"]["num-examples"] for r in replies], np.float64
        )
        weights /= weights.sum()
        model = {
            name: sum(
                w * r.content.array_records["arrays"][name]
                for w, r in zip(weights, replies, strict=True)
            ).astype(np.float32)
            for name in model
        }
        train_loss = float(
            sum(
                w * r.content.metric_records["metrics"]["train-loss"]
                for w, r in zip(weights, replies, strict=True)
            )
        )
        loss, accuracy = evaluate(model, x_test, y_test)
        grid.report(
            server_round,
            {"accuracy": accuracy, "loss": loss, "train-loss": train_loss, "nodes": len(replies)},
        )
