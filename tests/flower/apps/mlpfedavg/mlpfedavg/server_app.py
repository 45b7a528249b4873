"""mlpfedavg: the ServerApp, FedAvg with a central evaluate_fn, as quickstart-pytorch writes it."""

import json
from logging import INFO

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from mlpfedavg.task import evaluate, make_data, make_model

app = ServerApp()
central: dict[int, dict[str, float]] = {}


def global_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    model = make_model()
    model.load_state_dict(arrays.to_torch_state_dict())
    loss, accuracy = evaluate(model, *make_data(1000))
    central[server_round] = {"loss": loss, "accuracy": accuracy}
    return MetricRecord({"loss": loss, "accuracy": accuracy})


@app.main()
def main(grid: Grid, context: Context) -> None:
    num_rounds = int(context.run_config["num-server-rounds"])
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=context.run_config["fraction-evaluate"])
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(make_model().state_dict()),
        train_config=ConfigRecord({"lr": context.run_config["lr"]}),
        num_rounds=num_rounds,
        evaluate_fn=global_evaluate,
    )
    final = result.arrays.to_torch_state_dict()
    figures = {
        "central": {str(k): v for k, v in sorted(central.items())},
        "weight_sums": {k: float(v.double().sum()) for k, v in final.items()},
    }
    log(INFO, "figures: %s", json.dumps(figures))
    if context.run_config["result-file"]:
        with open(str(context.run_config["result-file"]), "w", encoding="utf-8") as f:
            json.dump(figures, f)
