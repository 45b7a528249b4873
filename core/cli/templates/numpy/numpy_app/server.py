"""The ServerApp: FedAvg (aggregated on the link as replies arrive), evaluated centrally."""

from __future__ import annotations

from fedzero.aggregation import FedAvg
from fedzero.core import ArrayRecord, Context, Grid, ServerApp
from numpy_app.task import evaluate, initial_model, load_test_set

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run ``num-rounds`` rounds of federated averaging."""
    cfg = context.run_config
    x_test, y_test = load_test_set()

    def central_evaluation(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        mse, r2 = evaluate(dict(arrays), x_test, y_test)
        return {"mse": mse, "r2": r2}

    strategy = FedAvg(
        fraction_evaluate=0.0,  # evaluate on the server's held-out set instead
        min_available_nodes=int(cfg["min-nodes"]),
        min_train_nodes=int(cfg["min-nodes"]),
    )
    strategy.start(
        grid,
        ArrayRecord(initial_model()),
        num_rounds=int(cfg["num-rounds"]),
        evaluate_fn=central_evaluation,
    )
