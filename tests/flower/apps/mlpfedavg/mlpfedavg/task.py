"""mlpfedavg: a small MLP on synthetic data that every node derives from its partition id."""

import numpy as np
import torch
from torch import nn

FEATURES = 8
SAMPLES = 64


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, 2))


def make_data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(SAMPLES, FEATURES)).astype(np.float32)
    w = np.linspace(-1.0, 1.0, FEATURES, dtype=np.float32)
    y = (x @ w + 0.3 * x[:, 0] ** 2 > 0.2).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> float:
    torch.set_num_threads(1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    total = 0.0
    for _ in range(epochs):
        for start in range(0, len(x), 16):  # fixed order: no shuffling, same on every framework
            opt.zero_grad()
            loss = loss_fn(model(x[start : start + 16]), y[start : start + 16])
            loss.backward()
            opt.step()
            total += float(loss)
    return total / (epochs * ((len(x) + 15) // 16))


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = float(nn.CrossEntropyLoss()(logits, y))
        accuracy = float((logits.argmax(1) == y).float().mean())
    return loss, accuracy
