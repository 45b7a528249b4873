"""The ServerApp: a FedAvg subclass with its own configure_train and aggregate_train."""

import json
from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


def loss_summary(records: list[RecordDict], weighting_key: str) -> MetricRecord:
    """train_metrics_aggr_fn: the weighted mean and the worst node's loss."""
    total = sum(float(r["metrics"][weighting_key]) for r in records)
    mean = sum(float(r["metrics"]["loss"]) * float(r["metrics"][weighting_key]) for r in records)
    worst = max(float(r["metrics"]["loss"]) for r in records)
    return MetricRecord({"loss-mean": mean / total, "loss-max": worst, "nodes": len(records)})


class ScheduledFedAvg(FedAvg):
    """FedAvg with a halving learning rate and a log of what each round received."""

    def __init__(self, base_lr: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.base_lr = base_lr
        self.rounds: list[dict] = []

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config["lr"] = self.base_lr * 0.5 ** (server_round - 1)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        examples = sorted(int(r.content["metrics"]["num-examples"]) for r in replies)
        self.rounds.append({"round": server_round, "examples": examples})
        if metrics is not None:
            metrics["lr"] = self.base_lr * 0.5 ** (server_round - 1)
        return arrays, metrics


@app.main()
def main(grid: Grid, context: Context) -> None:
    strategy = ScheduledFedAvg(
        base_lr=float(context.run_config["lr"]),
        fraction_train=1.0,
        fraction_evaluate=1.0,
        min_available_nodes=3,
        min_train_nodes=3,
        min_evaluate_nodes=3,
        train_metrics_aggr_fn=loss_summary,
    )
    initial = ArrayRecord([np.zeros(3, np.float32), np.zeros(1, np.float32)])
    result = strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=int(context.run_config["num-server-rounds"]),
    )
    w, b = result.arrays.to_numpy_ndarrays()
    figures = {
        "w": w.tolist(),
        "b": b.tolist(),
        "received": strategy.rounds,
        "train": {str(k): dict(v) for k, v in result.train_metrics_clientapp.items()},
        "evaluate": {str(k): dict(v) for k, v in result.evaluate_metrics_clientapp.items()},
    }
    print("figures:", json.dumps(figures))
    if context.run_config["result-file"]:
        with open(str(context.run_config["result-file"]), "w", encoding="utf-8") as f:
            json.dump(figures, f)
