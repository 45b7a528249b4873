"""Helpers a ClientApp uses with some strategies (NumPy only; torch imported lazily)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._array_record import ArrayRecord
from ._dtypes import is_float_dtype


def clip_update(new: ArrayRecord, reference: ArrayRecord, clipping_norm: float) -> ArrayRecord:
    """Clip the update ``new - reference`` to L2 norm ``clipping_norm`` (over all float arrays).

    Use it in a ClientApp under ``DifferentialPrivacyClientSideFixedClipping``:
    ``clip_update(trained, received, context-config "clipping-norm")``.

    Returns:
        ``reference + delta * min(1, clipping_norm / ||delta||)``; non-float
        arrays are returned as trained.

    Raises:
        ValueError: the records' names or shapes differ, or the norm is not positive.
    """
    if not clipping_norm > 0:
        raise ValueError(f"clipping_norm must be positive, got {clipping_norm}")
    if list(new) != list(reference):
        raise ValueError("new and reference must hold the same arrays in the same order")
    floats = [k for k, v in new.items() if is_float_dtype(v.dtype)]
    deltas = {k: new[k].astype(np.float64) - reference[k].astype(np.float64) for k in floats}
    norm = math.sqrt(sum(float(np.vdot(d, d)) for d in deltas.values()))
    factor = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
    out = {
        k: (reference[k].astype(np.float64) + deltas[k] * factor).astype(v.dtype)
        if k in deltas
        else v
        for k, v in new.items()
    }
    return ArrayRecord(out)


def proximal_term(model: Any, global_params: ArrayRecord, mu: float) -> Any:
    """FedProx's ``mu / 2 * ||w - w_global||^2`` for a torch model, to add to the loss.

    Args:
        model: the torch module being trained.
        global_params: the global model received this round (same names).
        mu: the ``"proximal-mu"`` of the train config.

    Returns:
        A scalar torch tensor (differentiable in the model's parameters).
    """
    import torch

    reference = global_params.to_torch_state_dict(copy=False)
    total = torch.zeros((), dtype=torch.float32)
    for name, param in model.named_parameters():
        total = total + (param - reference[name].to(param.dtype)).pow(2).sum()
    return (mu / 2.0) * total
