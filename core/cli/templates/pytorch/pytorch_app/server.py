"""The ServerApp: FedAvg (aggregated on the link as replies arrive), evaluated centrally."""

from __future__ import annotations

from fedzero.aggregation import FedAvg
from fedzero.core import ArrayRecord, Context, Grid, ServerApp
from pytorch_app.task import Net, evaluate, load_test_set

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run ``num-rounds`` rounds of federated averaging."""
    cfg = context.run_config
    x_test, y_test = load_test_set()

    def central_evaluation(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        net = Net()
        net.load_state_dict(arrays.to_torch_state_dict())
        loss, accuracy = evaluate(net, x_test, y_test)
        return {"accuracy": accuracy, "loss": loss}

    strategy = FedAvg(
        fraction_evaluate=0.0,  # evaluate on the server's held-out set instead
        min_available_nodes=int(cfg["min-nodes"]),
        min_train_nodes=int(cfg["min-nodes"]),
    )
    strategy.start(
        grid,
        ArrayRecord(Net()),
        num_rounds=int(cfg["num-rounds"]),
        evaluate_fn=central_evaluation,
    )
