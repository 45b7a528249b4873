"""The learning task: data partitions, the model, training and evaluation.

The data set is scikit-learn's bundled 8x8 handwritten digits (1,797 images,
shipped inside the package: nothing is downloaded). 20% is held out for the
server's evaluation; the rest is shuffled once and split across the nodes.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

NUM_FEATURES = 64
NUM_CLASSES = 10


def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(42).permutation(len(y))
    x, y = x[order], y[order]
    cut = int(0.8 * len(y))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def load_partition(partition_id: int, num_partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """Return this node's share of the training data."""
    x, y, _, _ = _split()
    parts = np.array_split(np.arange(len(y)), num_partitions)
    idx = parts[partition_id]
    return x[idx], y[idx]


def load_test_set() -> tuple[np.ndarray, np.ndarray]:
    """Return the held-out data the server evaluates on."""
    _, _, x, y = _split()
    return x, y


def initial_model() -> dict[str, np.ndarray]:
    """Softmax regression parameters, initialized to zero."""
    return {
        "weight": np.zeros((NUM_FEATURES, NUM_CLASSES), np.float32),
        "bias": np.zeros(NUM_CLASSES, np.float32),
    }


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def evaluate(model: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Return (loss, accuracy) of ``model`` on ``x, y``."""
    p = _softmax(x @ model["weight"] + model["bias"])
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    accuracy = float((p.argmax(axis=1) == y).mean())
    return loss, accuracy


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
    """Mini-batch SGD on the cross-entropy loss; return the new model and the train loss."""
    w, b = model["weight"].copy(), model["bias"].copy()  # received arrays are read-only
    rng = np.random.default_rng(seed)
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[y]
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            p = _softmax(x[idx] @ w + b)
            grad = (p - onehot[idx]) / len(idx)
            w -= lr * (x[idx].T @ grad)
            b -= lr * grad.sum(axis=0)
    new = {"weight": w, "bias": b}
    return new, evaluate(new, x, y)[0]
