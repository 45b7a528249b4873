"""The learning task: data, model, training and evaluation.

The data is synthetic: points around NUM_CLASSES fixed cluster centres. Every
node draws its own examples from a seed given by its partition id, and the
server evaluates on a separately drawn held-out set. Nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

torch.set_num_threads(1)  # several nodes may share one machine

NUM_FEATURES = 16
NUM_CLASSES = 4
EXAMPLES_PER_NODE = 256

_CENTRES = np.random.default_rng(0).normal(scale=0.7, size=(NUM_CLASSES, NUM_FEATURES))


class Net(nn.Module):
    """A small multi-layer perceptron."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(NUM_FEATURES, 32), nn.ReLU(), nn.Linear(32, NUM_CLASSES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the class scores (logits) of a batch of points."""
        logits: torch.Tensor = self.layers(x)
        return logits


def _draw(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, size=n)
    points = _CENTRES[labels] + rng.normal(size=(n, NUM_FEATURES))
    return torch.tensor(points, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)


def load_partition(partition_id: int, num_partitions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return this node's training data."""
    return _draw(1000 + partition_id, EXAMPLES_PER_NODE)


def load_test_set() -> tuple[torch.Tensor, torch.Tensor]:
    """Return the held-out data the server evaluates on."""
    return _draw(1, 1000)


def train(
    net: Net, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, batch_size: int
) -> float:
    """SGD with momentum; return the mean training loss of the last epoch."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    total = 0.0
    for _ in range(epochs):
        total = 0.0
        for start in range(0, len(y), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
    return total / len(y)


@torch.no_grad()
def evaluate(net: Net, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Return (loss, accuracy)."""
    net.eval()
    out = net(x)
    return float(nn.functional.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())
