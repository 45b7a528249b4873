"""The learning task: data, model, training and evaluation.

The data is synthetic: y = x @ w + b + noise for one fixed true (w, b). Every
node draws its own examples from a seed given by its partition id, with its
features shifted by partition (so the nodes' data differ), and the server
evaluates on a separately drawn held-out set. Nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

NUM_FEATURES = 8
EXAMPLES_PER_NODE = 200
NOISE = 0.1

_truth = np.random.default_rng(0)
TRUE_WEIGHT = _truth.normal(size=NUM_FEATURES).astype(np.float32)
TRUE_BIAS = np.float32(0.5)


def _draw(seed: int, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=shift, size=(n, NUM_FEATURES)).astype(np.float32)
    y = x @ TRUE_WEIGHT + TRUE_BIAS + NOISE * rng.normal(size=n).astype(np.float32)
    return x, y.astype(np.float32)


def load_partition(partition_id: int, num_partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """Return this node's training data."""
    return _draw(1000 + partition_id, EXAMPLES_PER_NODE, shift=partition_id / num_partitions)


def load_test_set() -> tuple[np.ndarray, np.ndarray]:
    """Return the held-out data the server evaluates on."""
    return _draw(1, 1000, shift=0.5)


def initial_model() -> dict[str, np.ndarray]:
    """Linear-model parameters, initialized to zero."""
    return {
        "weight": np.zeros(NUM_FEATURES, np.float32),
        "bias": np.zeros(1, np.float32),
    }


def evaluate(model: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Return (mean squared error, R^2) of ``model`` on ``x, y``."""
    error = x @ model["weight"] + model["bias"] - y
    mse = float(np.mean(error**2))
    return mse, 1.0 - mse / float(np.var(y))


def train(
    model: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> tuple[dict[str, np.ndarray], float]:
    """Mini-batch SGD on the squared error; return the new model and its train MSE."""
    w, b = model["weight"].copy(), model["bias"].copy()  # received arrays are read-only
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            error = x[idx] @ w + b - y[idx]
            w -= lr * 2.0 * (x[idx].T @ error) / len(idx)
            b -= lr * 2.0 * error.mean()
    new = {"weight": w, "bias": b}
    return new, evaluate(new, x, y)[0]
