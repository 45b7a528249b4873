"""App templates: ``fedzero new`` writes a working app project, offline.

Two frameworks:

- ``numpy``: linear regression on synthetic data, in plain NumPy (no other
  dependency; nothing is downloaded).
- ``pytorch``: a small PyTorch MLP classifying synthetic Gaussian clusters.

Both ServerApps use the strategy API (``FedAvg`` aggregated on the link, central
evaluation with ``evaluate_fn``), and both run at once with
``fedzero local <dir> --nodes 2``. The templates are strings in this module, so
there is no package data to install.
"""

from __future__ import annotations

import keyword
import re
import sys
from pathlib import Path

from .._errors import ConfigurationError

FRAMEWORKS = ("numpy", "pytorch")
"""The frameworks :func:`create_app` knows."""

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_RESERVED = frozenset({"fedzero", "numpy", "torch", "sklearn", "scipy", "test", "tests", "app"})


def create_app(name: str, dest: str | Path, *, framework: str = "numpy") -> Path:
    """Write a new app project named ``name`` into the folder ``dest``.

    The project's import package is ``name`` lower-cased, with ``-`` turned into
    ``_`` (``my-app`` → ``my_app``).

    Args:
        name: the project name: a letter, then up to 63 letters, digits, ``_`` or
            ``-``; its package name may not shadow a standard-library or common
            module (``json``, ``numpy``, ``torch``, ...).
        dest: the project folder; created if missing, refused if not empty.
        framework: one of :data:`FRAMEWORKS`.

    Returns:
        The project folder.

    Raises:
        ConfigurationError: ``name`` or ``framework`` is not allowed, or ``dest``
            exists and is not an empty folder.
    """
    package = package_name(name)
    if framework not in FRAMEWORKS:
        raise ConfigurationError(
            f"unknown framework {framework!r}; choose one of: {', '.join(FRAMEWORKS)}"
        )
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigurationError(f"{dest} already exists and is not an empty folder")
    files = {
        "pyproject.toml": _PYPROJECT[framework],
        "README.md": _README,
        ".gitignore": _GITIGNORE,
        "__PACKAGE__/__init__.py": _INIT[framework],
        "__PACKAGE__/task.py": _TASK[framework],
        "__PACKAGE__/client.py": _CLIENT[framework],
        "__PACKAGE__/server.py": _SERVER[framework],
    }
    for template_path, template in files.items():
        path = dest / template_path.replace("__PACKAGE__", package)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = template.replace("__PACKAGE__", package).replace("__NAME__", name)
        path.write_text(text.replace("__FRAMEWORK__", framework), encoding="utf-8")
    return dest


def package_name(name: str) -> str:
    """Return the import package of project ``name``, after validating it.

    Raises:
        ConfigurationError: ``name`` is not allowed (the message says what is).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"app name {name!r} is not allowed: use a letter, then up to 63 letters, "
            "digits, '_' or '-' (e.g. 'my-app')"
        )
    package = name.lower().replace("-", "_")
    if keyword.iskeyword(package) or package in sys.stdlib_module_names or package in _RESERVED:
        raise ConfigurationError(
            f"app name {name!r} is not allowed: its package {package!r} would shadow "
            "a Python keyword or module; pick another name"
        )
    return package


# ------------------------------------------------------------------ templates

_GITIGNORE = """\
__pycache__/
*.pyc
*.fzb
.venv/
"""

_README = """\
# __NAME__

A federated-learning app for [fedzero](https://github.com/fedzero/fedzero)
(template: `__FRAMEWORK__`).

| file | what it holds |
| --- | --- |
| `pyproject.toml` | the app's name, its ServerApp and ClientApp, and the run config |
| `__PACKAGE__/task.py` | the data, the model, training and evaluation |
| `__PACKAGE__/client.py` | the ClientApp: trains and evaluates on a node's data |
| `__PACKAGE__/server.py` | the ServerApp: FedAvg on the link, central evaluation |

The data is synthetic and generated locally: every node draws its own share
(from its `partition-id`), so nothing is downloaded.

## Run it on this machine

```bash
fedzero local . --nodes 4
fedzero local . --nodes 4 --run-config num-rounds=10 --run-config learning-rate=0.05
```

`fedzero local` starts a link and 4 nodes, runs the app once with a live
per-round display, and stops everything. Each node gets `partition-id` and
`num-partitions` in its node config.

## Run it on a federation

```bash
fedzero build .     # writes __NAME__-<hash>.fzb and prints the bundle hash
fedzero run .       # bundles the app and submits it to a running link
```

`fedzero build` packs the app into a bundle: a deterministic archive named by
the SHA-256 hash of its manifest (the same files give the same hash on every
machine). Files under `.git/`, `.venv/`, `__pycache__/`, `build/`, `dist/` and
hidden files are left out; choose files with `include`/`exclude` glob lists
under `[tool.fedzero.app]`. `fedzero run` sends the bundle to the link's exec
service, which starts the ServerApp; every selected node receives the bundle,
checks its hash (nodes may allow-list hashes) and runs the ClientApp from it.
The run config in `pyproject.toml` is the default; override it with
`--run-config key=value`.
"""

_PYPROJECT = {
    "numpy": """\
[project]
name = "__NAME__"
version = "1.0.0"
description = "fedzero app: linear regression on synthetic data, in NumPy"
dependencies = ["fedzero", "numpy"]

[tool.fedzero.app]
serverapp = "__PACKAGE__.server:app"
clientapp = "__PACKAGE__.client:app"

[tool.fedzero.app.config]
num-rounds = 5
min-nodes = 1
local-epochs = 2
learning-rate = 0.05
batch-size = 16
""",
    "pytorch": """\
[project]
name = "__NAME__"
version = "1.0.0"
description = "fedzero app: a PyTorch MLP on synthetic clusters"
dependencies = ["fedzero[torch]"]

[tool.fedzero.app]
serverapp = "__PACKAGE__.server:app"
clientapp = "__PACKAGE__.client:app"

[tool.fedzero.app.config]
num-rounds = 5
min-nodes = 1
local-epochs = 2
learning-rate = 0.05
batch-size = 32
""",
}

_INIT = {
    "numpy": '"""__NAME__: federated linear regression with fedzero and NumPy."""\n',
    "pytorch": '"""__NAME__: a federated PyTorch MLP with fedzero."""\n',
}

_TASK_NUMPY = '''\
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
'''

_CLIENT_NUMPY = '''\
"""The ClientApp: trains on this node's data, evaluates on it."""

from __future__ import annotations

import numpy as np
from fedzero.core import ArrayRecord, ClientApp, Context, Message, MetricRecord, RecordDict

from __PACKAGE__.task import evaluate, load_partition, train

app = ClientApp()


def _data(context: Context) -> tuple[np.ndarray, np.ndarray]:
    return load_partition(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    """Train the received model on this node's data; reply with the new model."""
    x, y = _data(context)
    cfg = context.run_config
    model, mse = train(
        dict(msg.content.array_records["arrays"]),
        x,
        y,
        epochs=int(cfg["local-epochs"]),
        lr=float(cfg["learning-rate"]),
        batch_size=int(cfg["batch-size"]),
        seed=int(msg.metadata.group_id or 0) * 1000 + int(context.node_config["partition-id"]),
    )
    metrics = MetricRecord({"mse": mse, "num-examples": len(y)})
    return msg.create_reply(RecordDict({"arrays": ArrayRecord(model), "metrics": metrics}))


@app.evaluate()
def evaluate_fn(msg: Message, context: Context) -> Message:
    """Evaluate the received model on this node's data."""
    x, y = _data(context)
    mse, r2 = evaluate(dict(msg.content.array_records["arrays"]), x, y)
    metrics = MetricRecord({"mse": mse, "r2": r2, "num-examples": len(y)})
    return msg.create_reply(RecordDict({"metrics": metrics}))
'''

_SERVER_NUMPY = '''\
"""The ServerApp: FedAvg (aggregated on the link as replies arrive), evaluated centrally."""

from __future__ import annotations

from fedzero.aggregation import FedAvg
from fedzero.core import ArrayRecord, Context, Grid, ServerApp

from __PACKAGE__.task import evaluate, initial_model, load_test_set

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run ``num-rounds`` rounds of federated averaging."""
    cfg = context.run_config
    x_test, y_test = load_test_set()

    def central_evaluation(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        mse, r2 = evaluate(dict(arrays), x_test, y_test)
        return {"mse": mse, "r2": r2}

    strategy = FedAvg(
        fraction_evaluate=0.0,  # evaluate on the server's held-out set instead
        min_available_nodes=int(cfg["min-nodes"]),
        min_train_nodes=int(cfg["min-nodes"]),
    )
    strategy.start(
        grid,
        ArrayRecord(initial_model()),
        num_rounds=int(cfg["num-rounds"]),
        evaluate_fn=central_evaluation,
    )
'''

_TASK_PYTORCH = '''\
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
'''

_CLIENT_PYTORCH = '''\
"""The ClientApp: load the global weights, train on this node's data, reply."""

from __future__ import annotations

from fedzero.core import ArrayRecord, ClientApp, Context, Message, MetricRecord, RecordDict

from __PACKAGE__.task import Net, evaluate, load_partition, train

app = ClientApp()


def _net(msg: Message) -> Net:
    net = Net()
    # The received arrays are read-only views of the network buffers;
    # load_state_dict copies them into the model.
    net.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    return net


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    """Train the received model on this node's data; reply with the new weights."""
    net = _net(msg)
    x, y = load_partition(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )
    cfg = context.run_config
    loss = train(
        net, x, y, int(cfg["local-epochs"]), float(cfg["learning-rate"]), int(cfg["batch-size"])
    )
    # ArrayRecord(net) shares memory with the model's tensors: no copy before sending.
    metrics = MetricRecord({"loss": loss, "num-examples": len(y)})
    return msg.create_reply(RecordDict({"arrays": ArrayRecord(net), "metrics": metrics}))


@app.evaluate()
def evaluate_fn(msg: Message, context: Context) -> Message:
    """Evaluate the received model on this node's data."""
    x, y = load_partition(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )
    loss, accuracy = evaluate(_net(msg), x, y)
    metrics = MetricRecord({"loss": loss, "accuracy": accuracy, "num-examples": len(y)})
    return msg.create_reply(RecordDict({"metrics": metrics}))
'''

_SERVER_PYTORCH = '''\
"""The ServerApp: FedAvg (aggregated on the link as replies arrive), evaluated centrally."""

from __future__ import annotations

from fedzero.aggregation import FedAvg
from fedzero.core import ArrayRecord, Context, Grid, ServerApp

from __PACKAGE__.task import Net, evaluate, load_test_set

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run ``num-rounds`` rounds of federated averaging."""
    cfg = context.run_config
    x_test, y_test = load_test_set()

    def central_evaluation(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        net = Net()
        net.load_state_dict(arrays.to_torch_state_dict())
        loss, accuracy = evaluate(net, x_test, y_test)
        return {"accuracy": accuracy, "loss": loss}

    strategy = FedAvg(
        fraction_evaluate=0.0,  # evaluate on the server's held-out set instead
        min_available_nodes=int(cfg["min-nodes"]),
        min_train_nodes=int(cfg["min-nodes"]),
    )
    strategy.start(
        grid,
        ArrayRecord(Net()),
        num_rounds=int(cfg["num-rounds"]),
        evaluate_fn=central_evaluation,
    )
'''

_TASK = {"numpy": _TASK_NUMPY, "pytorch": _TASK_PYTORCH}
_CLIENT = {"numpy": _CLIENT_NUMPY, "pytorch": _CLIENT_PYTORCH}
_SERVER = {"numpy": _SERVER_NUMPY, "pytorch": _SERVER_PYTORCH}
