"""The Numba server-optimizer kernels fedzero ran before the NumPy path, as the oracle.

Verbatim from the kernels module they were removed from (only the decorator is
spelled out: the production flags, without the on-disk cache). The server
optimizers now run in the ServerApp process in NumPy; ``test_server_opt.py``
checks them against these bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
from numba import prange

BLOCK = 8192

OPT_ADAM = 0
OPT_YOGI = 1
OPT_ADAGRAD = 2

_FLAGS: dict[str, Any] = {
    "nogil": True,
    "cache": False,
    "fastmath": False,
    "error_model": "numpy",
    "parallel": True,
}
F = TypeVar("F", bound=Callable[..., Any])


def _jit(fn: F) -> F:
    return cast(F, numba.njit(**_FLAGS)(fn))


@_jit
def fedopt_step(
    x: Any, agg: Any, m: Any, v: Any, out: Any, b1: Any, b2: Any, eta: Any, tau: Any, kind: Any
) -> None:
    """One FedAdam / FedYogi / FedAdagrad server step; updates m, v in place.

    ``delta = agg - x``; ``m = b1*m + (1-b1)*delta``; v per ``kind`` (Reddi et al.
    2021, as Flower writes it); ``out = x + eta * m / (sqrt(v) + tau)``.
    """
    n = x.shape[0]
    for blk in prange((n + BLOCK - 1) // BLOCK):
        start = blk * BLOCK
        for i in range(start, min(n, start + BLOCK)):
            delta = agg[i] - x[i]
            mi = b1 * m[i] + (1.0 - b1) * delta
            d2 = delta * delta
            vi = v[i]
            if kind == OPT_ADAM:
                vi = b2 * vi + (1.0 - b2) * d2
            elif kind == OPT_YOGI:
                vi = vi - (1.0 - b2) * d2 * np.sign(vi - d2)
            else:
                vi = vi + d2
            m[i] = mi
            v[i] = vi
            out[i] = x[i] + eta * mi / (np.sqrt(vi) + tau)


@_jit
def momentum_step(x: Any, agg: Any, mom: Any, out: Any, lr: Any, beta: Any, first: Any) -> None:
    """FedAvgM: ``g = x - agg``; ``mom = beta*mom + g`` (``g`` on the first round).

    ``out = x - lr * mom``. With ``beta == 0`` the momentum buffer is ``g``.
    """
    n = x.shape[0]
    for blk in prange((n + BLOCK - 1) // BLOCK):
        start = blk * BLOCK
        for i in range(start, min(n, start + BLOCK)):
            g = x[i] - agg[i]
            if beta > 0.0 and not first:
                g = beta * mom[i] + g
            mom[i] = g
            out[i] = x[i] - lr * g
