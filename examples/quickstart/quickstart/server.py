"""The ServerApp: FedAvg (aggregated on the link as replies arrive), evaluated centrally."""

from __future__ import annotations

from fedzero.aggregation import FedAvg
from fedzero.core import ArrayRecord, Context, Grid, ServerApp
from quickstart.task import evaluate, initial_model, load_test_set

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    x_test, y_test = load_test_set()

    def central_evaluation(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        loss, accuracy = evaluate(dict(arrays), x_test, y_test)
        return {"accuracy": accuracy, "loss": loss}

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
