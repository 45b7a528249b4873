"""ServerApp: FedAvg of the nodes' state_dicts, central evaluation every round."""

from __future__ import annotations

import torch

from fedzero.core import ArrayRecord, Context, Grid, RecordDict, ServerApp
from pytorch_digits.task import Net, evaluate, load_test_set

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    num_rounds = int(context.run_config["num-rounds"])
    node_ids = grid.get_node_ids(min_nodes=1)
    net = Net()
    x_test, y_test = load_test_set()
    for server_round in range(1, num_rounds + 1):
        content = RecordDict({"arrays": ArrayRecord(net)})
        messages = [
            grid.create_message(content, "train", n, group_id=str(server_round)) for n in node_ids
        ]
        replies = [r for r in grid.send_and_receive(messages) if r.has_content()]
        total = sum(r.content.metric_records["metrics"]["num-examples"] for r in replies)
        averaged = {}
        for name, tensor in net.state_dict().items():
            stacked = [
                torch.from_numpy(r.content.array_records["arrays"][name].copy())
                * (r.content.metric_records["metrics"]["num-examples"] / total)
                for r in replies
            ]
            averaged[name] = torch.stack(stacked).sum(0).to(tensor.dtype)
        net.load_state_dict(averaged)
        loss, accuracy = evaluate(net, x_test, y_test)
        grid.report(server_round, {"accuracy": accuracy, "loss": loss, "nodes": len(replies)})
