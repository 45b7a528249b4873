"""Federated XGBoost (Flower's FedXgbBagging and FedXgbCyclic): models as bytes.

The global model is one uint8 array (key ``"0"``) holding an XGBoost model in
its JSON form, as in Flower. xgboost itself is not needed here: bagging edits
the JSON (appends the nodes' new trees), cyclic passes one node's model on.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from fedzero.core import ArrayRecord, ConfigRecord, ConfigurationError, Grid, Message, RecordDict

from ._aggregate import array_record
from ._strategy import Strategy


def _model_bytes(arrays: ArrayRecord) -> bytes:
    if len(arrays) != 1:
        raise ValueError(f"an XGBoost model is one array in its ArrayRecord, got {len(arrays)}")
    return np.ascontiguousarray(next(iter(arrays.values()))).tobytes()


def _tree_nums(model: dict[str, Any]) -> tuple[int, int]:
    param = model["learner"]["gradient_booster"]["model"]["gbtree_model_param"]
    return int(param["num_trees"]), int(param["num_parallel_tree"])


def aggregate_bagging(previous: bytes, current: bytes) -> bytes:
    """Append ``current``'s trees of this round to ``previous`` (Flower's bagging).

    Raises:
        ValueError: a model is not XGBoost JSON.
    """
    if previous == b"":
        return current
    try:
        prev, curr = json.loads(previous), json.loads(current)
        prev_trees, _ = _tree_nums(prev)
        _, parallel = _tree_nums(curr)
        model = prev["learner"]["gradient_booster"]["model"]
        model["gbtree_model_param"]["num_trees"] = str(prev_trees + parallel)
        model["iteration_indptr"].append(model["iteration_indptr"][-1] + parallel)
        new_trees = curr["learner"]["gradient_booster"]["model"]["trees"]
        for i in range(parallel):
            new_trees[i]["id"] = prev_trees + i
            model["trees"].append(new_trees[i])
            model["tree_info"].append(0)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"not an XGBoost JSON model: {exc}") from exc
    return json.dumps(prev).encode()


def _as_record(model: bytes) -> ArrayRecord:
    return ArrayRecord({"0": np.frombuffer(model, dtype=np.uint8).copy()}, copy=False)


@dataclasses.dataclass
class FedXgbBagging(Strategy):
    """Bagging of XGBoost trees: every node's new trees join the global model."""

    current_bst: bytes | None = dataclasses.field(init=False, default=None, repr=False)

    def aggregate_spec(self) -> dict[str, Any] | None:
        """None: bagging edits the models on the ServerApp."""
        return None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the model sent (as bytes); FedAvg's messages."""
        self.current_bst = _model_bytes(arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_arrays(
        self, server_round: int, contents: Sequence[RecordDict]
    ) -> tuple[ArrayRecord | None, list[RecordDict]]:
        """Fold each reply's trees into the global model."""
        if self.current_bst is None:
            return None, list(contents)
        for content in contents:
            self.current_bst = aggregate_bagging(
                self.current_bst, _model_bytes(array_record(content))
            )
        return _as_record(self.current_bst), list(contents)


@dataclasses.dataclass
class FedXgbCyclic(Strategy):
    """Cyclic XGBoost: one node per round, in turn; its model becomes the global one."""

    registered_nodes: dict[int, int] = dataclasses.field(
        init=False, default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("fraction_train", "fraction_evaluate"):
            if getattr(self, name) not in (0.0, 1.0):
                raise ConfigurationError(f"{name} can only be 1.0 or 0.0 for FedXgbCyclic")

    def aggregate_spec(self) -> dict[str, Any] | None:
        """None: the round's one reply is the model."""
        return None

    def _one_node(self, grid: Grid, server_round: int) -> list[int]:
        nodes = self._sample(grid, self.fraction_train, self.min_train_nodes)
        if not nodes:
            return []
        next_index = max(self.registered_nodes.values(), default=0) + 1
        for node in nodes:  # a node keeps its place in the cycle
            if node not in self.registered_nodes:
                self.registered_nodes[node] = next_index
                next_index += 1
        ordered = sorted(nodes, key=lambda n: self.registered_nodes[n])
        return [ordered[(server_round - 1) % len(ordered)]]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """A train message to this round's node."""
        self.current_arrays = arrays
        config["server-round"] = server_round
        nodes = self._one_node(grid, server_round)
        return self._messages(grid, "train", nodes, arrays, config)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """An evaluate message to this round's node."""
        if self.fraction_evaluate == 0.0:
            return []
        config["server-round"] = server_round
        return self._messages(grid, "evaluate", self._one_node(grid, server_round), arrays, config)

    def aggregate_arrays(
        self, server_round: int, contents: Sequence[RecordDict]
    ) -> tuple[ArrayRecord | None, list[RecordDict]]:
        """The first reply's model."""
        return array_record(contents[0]), list(contents)
