"""The ServerApp: FedMedian wrapped in server-side fixed-clipping differential privacy."""

import json

import numpy as np
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedMedian

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    median = FedMedian(
        fraction_train=1.0,
        fraction_evaluate=1.0,
        min_available_nodes=3,
        min_train_nodes=3,
        min_evaluate_nodes=3,
    )
    strategy = DifferentialPrivacyServerSideFixedClipping(
        median,
        noise_multiplier=float(context.run_config["noise-multiplier"]),
        clipping_norm=float(context.run_config["clipping-norm"]),
        num_sampled_clients=3,
    )
    initial = ArrayRecord([np.zeros(3, np.float32), np.zeros(1, np.float32)])
    models = []

    def central(server_round: int, arrays: ArrayRecord) -> None:
        w, b = arrays.to_numpy_ndarrays()
        models.append({"round": server_round, "w": w.tolist(), "b": b.tolist()})

    result = strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=int(context.run_config["num-server-rounds"]),
        evaluate_fn=central,
    )
    figures = {
        "models": models,
        "train": {str(k): dict(v) for k, v in result.train_metrics_clientapp.items()},
        "evaluate": {str(k): dict(v) for k, v in result.evaluate_metrics_clientapp.items()},
    }
    print("figures:", json.dumps(figures))
    if context.run_config["result-file"]:
        with open(str(context.run_config["result-file"]), "w", encoding="utf-8") as f:
            json.dump(figures, f)
