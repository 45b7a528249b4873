"""Link-side rounds: aggregate specs, the round book, the fold worker, checkpoints."""

from ._checkpoints import (
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from ._roundbook import RoundBook
from ._spec import AggregateSpec
from ._worker import FoldWorker

__all__ = [
    "AggregateSpec",
    "FoldWorker",
    "RoundBook",
    "checkpoint_path",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "save_checkpoint",
]
