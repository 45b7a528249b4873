"""Local data and training: linear regression by gradient descent, in NumPy."""

import numpy as np

TRUE_W = np.array([1.0, -2.0, 0.5], dtype=np.float32)


def load_data(partition_id: int) -> tuple[np.ndarray, np.ndarray]:
    """A node's own data: a partition-dependent slice of one linear problem."""
    rng = np.random.default_rng(7 + partition_id)
    n = 40 + 10 * partition_id
    x = rng.normal(partition_id * 0.3, 1.0, (n, 3)).astype(np.float32)
    y = (x @ TRUE_W + 0.3 + rng.normal(0, 0.1, n)).astype(np.float32)
    return x, y


def mse(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of the model on the data."""
    return float(np.mean((x @ w + b[0] - y) ** 2))


def train(
    w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, lr: float, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` full-batch gradient steps (in place on writable copies)."""
    for _ in range(steps):
        err = x @ w + b[0] - y
        w -= np.float32(lr) * (2.0 * x.T @ err / len(y)).astype(np.float32)
        b -= np.float32(lr) * np.float32(2.0 * err.mean())
    return w, b
