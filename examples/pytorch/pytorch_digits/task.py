"""Model, data and training loops. The data: scikit-learn's bundled 8x8 digits."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

torch.set_num_threads(1)  # several nodes share the machine


class Net(nn.Module):
    """A small CNN for 1x8x8 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc(x.flatten(1))


def _split() -> tuple[torch.Tensor, ...]:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(42).permutation(len(y))
    x = torch.tensor(x[order] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y[order], dtype=torch.long)
    cut = int(0.8 * len(y))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def load_partition(partition_id: int, num_partitions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This node's share of the training set."""
    x, y, _, _ = _split()
    idx = np.array_split(np.arange(len(y)), num_partitions)[partition_id]
    return x[idx], y[idx]


def load_test_set() -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out set the server evaluates on."""
    _, _, x, y = _split()
    return x, y


def train(
    net: Net, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, batch_size: int
) -> float:
    """SGD with momentum; returns the mean training loss of the last epoch."""
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
            total += float(loss) * len(yb)
    return total / len(y)


@torch.no_grad()
def evaluate(net: Net, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Return (loss, accuracy)."""
    net.eval()
    out = net(x)
    return float(nn.functional.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())
